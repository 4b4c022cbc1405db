"""Settings for talking to the Fly Machines API (the lead extends this with the rest).

pydantic-settings, environment prefix ``MACHINE_RECONCILER_``.  The token comes from
``FLY_API_TOKEN`` (the name flyctl uses) or from a file named by
``MACHINE_RECONCILER_API_TOKEN_FILE`` (systemd credentials, a mounted Kubernetes Secret); it is
a :class:`~pydantic.SecretStr` everywhere, so it never shows up in ``repr`` or logs.

Tests build ``Settings(_env_file=None, api_url=..., api_token=...)``: init keywords win over the
environment, and no ``.env`` file is read unless one is configured.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_API_URL", "Settings", "is_loopback_host"]

DEFAULT_API_URL = "https://api.machines.dev"


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (where plain HTTP cannot leak a token)."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """API connection, token, timeouts, client-side rate limits and retry maxima."""

    model_config = SettingsConfigDict(
        env_prefix="MACHINE_RECONCILER_",
        env_file=None,
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    api_url: str = Field(
        default=DEFAULT_API_URL,
        description="Machines API base URL (paths start with /v1). Plain http only to loopback.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        validation_alias="FLY_API_TOKEN",
        description="Fly API token (env FLY_API_TOKEN). Never logged.",
    )
    api_token_file: Path | None = Field(
        default=None,
        description="File holding the token (env MACHINE_RECONCILER_API_TOKEN_FILE).",
    )
    request_timeout: float = Field(
        default=30.0, gt=0, le=600, description="Seconds to wait for any one response."
    )
    connect_timeout: float = Field(default=10.0, gt=0, le=120, description="TCP+TLS connect.")
    wait_timeout_margin: float = Field(
        default=15.0,
        ge=1,
        le=300,
        description="Extra seconds the HTTP timeout of /wait gets above its 1..60 s long-poll.",
    )
    # Fly's documented limits (FLY_API.md 5): 1/s burst 3 per machine and action, get machine
    # 5/s burst 10; the global cap is ours, to protect the shared token.
    machine_action_rate: float = Field(default=1.0, gt=0, description="Per machine+action req/s.")
    machine_action_burst: int = Field(default=3, ge=1)
    get_machine_rate: float = Field(default=5.0, gt=0, description="Reads per machine, req/s.")
    get_machine_burst: int = Field(default=10, ge=1)
    global_rate: float = Field(default=20.0, gt=0, description="All requests together, req/s.")
    global_burst: int = Field(default=40, ge=1)
    retry_max_attempts: int = Field(
        default=4, ge=1, le=20, description="Tries per call, first included (transient errors)."
    )
    retry_base_delay: float = Field(default=1.0, ge=0.01, le=60)
    retry_max_delay: float = Field(default=30.0, ge=0.1, le=900)
    retry_max_retry_after: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="Longest Retry-After slept inside a call; longer ones requeue the item.",
    )
    list_max_pages: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"api_url must be an http(s) URL with a host, not {value!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("api_url must not carry credentials, a query or a fragment")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError(
                f"refusing plain http:// to non-loopback host {parts.hostname!r}: the API token "
                "would travel unencrypted; use https:// (http is allowed for localhost only)"
            )
        return url

    @model_validator(mode="after")
    def _load_token_file(self) -> Self:
        if self.api_token_file is None:
            return self
        if self.api_token is not None:
            raise ValueError(
                "both FLY_API_TOKEN and MACHINE_RECONCILER_API_TOKEN_FILE are set; set only one"
            )
        path = self.api_token_file
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise ValueError(f"cannot read API token file {str(path)!r}: {reason}") from None
        if not token:
            raise ValueError(f"API token file {str(path)!r} is empty")
        object.__setattr__(self, "api_token", SecretStr(token))
        return self
