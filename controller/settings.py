"""Settings: the API connection (every command) and the daemon (``machine-reconciler run``).

pydantic-settings, environment prefix ``MACHINE_RECONCILER_``.  The token comes from
``FLY_API_TOKEN`` (the name flyctl uses) or from a file named by
``MACHINE_RECONCILER_API_TOKEN_FILE`` (systemd credentials, a mounted Kubernetes Secret); it is
a :class:`~pydantic.SecretStr` everywhere, so it never shows up in ``repr`` or logs.

:class:`Settings` holds what ``plan`` and ``apply`` need and reads init keywords and the
environment.  :class:`DaemonSettings` adds the daemon's settings and one more source, a TOML
config file, with the precedence **CLI flags > environment > config file > defaults**:
:func:`load_daemon_settings` passes the flags as init keywords and names the file (``--config``,
else ``MACHINE_RECONCILER_CONFIG``, else ``/etc/machine-reconciler/config.toml`` when it exists).
The file's keys are the field names below (``interval = 30``); unknown keys are errors (a typo
must not be silently ignored), relative paths in it are relative to the file, and it may not
hold the token itself (config files tend to be world-readable): use ``api_token_file``.

Tests build ``Settings(_env_file=None, api_url=..., api_token=...)``: init keywords win over the
environment, and no ``.env`` file is read unless one is configured.  ``DaemonSettings(...)``
built directly reads no config file.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from controller.core import defaults as d
from controller.core.errors import ConfigError
from controller.core.retry import Backoff, RetryPolicy

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_API_URL",
    "DEFAULT_CONFIG_FILE",
    "DaemonSettings",
    "Settings",
    "is_loopback_host",
    "load_daemon_settings",
    "parse_bind",
    "settings_error",
]

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
        hide_input_in_errors=True,  # a rejected token must not appear in str(ValidationError)
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
    # 5/s burst 10.  The global cap is ours, not Fly's (Fly documents no per-token or per-org
    # request rate): a guard against a runaway loop, sized so it never paces what a 330-machine
    # window issues (6 calls per ~13 s update is ~150 req/s).  At 20 req/s a 1,000-machine
    # rollout took 1.5x its lower bound; at 100 req/s and a cap of 64 in flight, 4x.
    machine_action_rate: float = Field(
        default=d.ACTION_RATE, gt=0, description="Per machine+action req/s."
    )
    machine_action_burst: int = Field(default=d.ACTION_BURST, ge=1)
    get_machine_rate: float = Field(
        default=d.READ_RATE, gt=0, description="Reads per machine, req/s."
    )
    get_machine_burst: int = Field(default=d.READ_BURST, ge=1)
    global_rate: float = Field(
        default=d.GLOBAL_RATE, gt=0, description="All requests together, req/s (a runaway guard)."
    )
    global_burst: int = Field(default=d.GLOBAL_BURST, ge=1)
    retry_max_attempts: int = Field(
        default=d.RETRY_MAX_ATTEMPTS,
        ge=1,
        le=20,
        description="Tries per call, first included (transient errors).",
    )
    retry_base_delay: float = Field(default=d.RETRY_BASE_DELAY, ge=0.01, le=60)
    retry_max_delay: float = Field(default=d.RETRY_MAX_DELAY, ge=0.1, le=900)
    retry_max_retry_after: float = Field(
        default=d.RETRY_MAX_RETRY_AFTER,
        ge=0,
        le=3600,
        description="Longest Retry-After slept inside a call; longer ones requeue the item.",
    )
    list_max_pages: int = Field(default=1000, ge=1, le=100_000)

    def retry_policy(self) -> RetryPolicy:
        """The API retry policy these settings describe (the client's, and the base of the
        executor's); numbers not in the settings keep :class:`RetryPolicy`'s defaults."""
        return RetryPolicy(
            max_attempts=self.retry_max_attempts,
            transient=Backoff(
                base=self.retry_base_delay, cap=self.retry_max_delay, minimum=d.RETRY_MIN_DELAY
            ),
            max_retry_after=self.retry_max_retry_after,
        )

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

    @field_validator("api_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # unset and empty alike: "no Fly API token" where one is needed
        return SecretStr(clean_token(value.get_secret_value(), "FLY_API_TOKEN"))

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
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise ValueError(f"cannot read API token file {str(path)!r}: {reason}") from None
        token = clean_token(text, f"API token file {str(path)!r}")
        object.__setattr__(self, "api_token", SecretStr(token))
        return self


#: Fly's macaroon tokens as ``fly tokens create`` prints them: ``FlyV1 fm2_...`` (one space).
_FLYV1_PREFIX = "FlyV1 "


def clean_token(raw: str, source: str) -> str:
    """The token without surrounding whitespace (token files end in a newline), or a
    ``ValueError`` naming ``source`` when it is empty or holds inner whitespace or control
    characters, which would make an invalid ``Authorization`` header (the message never
    shows the token).  The one space of Fly's ``FlyV1 <macaroons>`` form is allowed."""
    token = raw.strip()
    if not token:
        raise ValueError(f"{source} is empty")
    body = token.removeprefix(_FLYV1_PREFIX)
    bad = next((c for c in body if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        kind = "whitespace" if bad.isspace() else "a control character"
        raise ValueError(
            f"{source} holds {kind} (U+{ord(bad):04X}) inside the token; "
            "check the value was pasted whole and on one line"
        )
    return token


# ------------------------------------------------------------------------------ the daemon

DEFAULT_CONFIG_FILE = Path("/etc/machine-reconciler/config.toml")
CONFIG_ENV = "MACHINE_RECONCILER_CONFIG"

#: The config file in use while :func:`load_daemon_settings` builds settings (None: no file).
_CONFIG_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "machine_reconciler_config_file", default=None
)
#: Keys the config file may not hold: a token belongs in the environment or a token file.
_SECRET_KEYS = frozenset({"api_token", "fly_api_token"})
_PATH_FIELDS = ("desired_dir", "api_token_file")


def parse_bind(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9440`` for IPv6) -> ``(host, port)``; raises ValueError."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, not {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets, like [::1]:9440, not {value!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, not {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be within 0..65535, not {port}")
    return host, port


class _ConfigFileSource(TomlConfigSettingsSource):
    """The TOML config file: field names as keys, no token, paths relative to the file."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        try:
            super().__init__(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        data = self.toml_data
        secret = sorted(k for k in data if k.lower() in _SECRET_KEYS)
        if secret:
            raise ConfigError(
                f"config file {path}: do not put the API token in a config file ({secret[0]}); "
                "use the FLY_API_TOKEN environment variable, or a token file "
                '(MACHINE_RECONCILER_API_TOKEN_FILE, or api_token_file = "/path" here)'
            )
        known = set(settings_cls.model_fields)
        unknown = sorted(k for k in data if k not in known)
        if unknown:
            raise ConfigError(f"config file {path}: unknown setting(s): {', '.join(unknown)}")
        for name in _PATH_FIELDS:
            value = data.get(name)
            if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
                data[name] = str(path.parent / value)
        self.init_kwargs = dict(data)


class DaemonSettings(Settings):
    """Everything ``machine-reconciler run`` needs (see the module docstring for the sources)."""

    # Merged over Settings' config (prefix, no .env file, frozen): only unknown keys change,
    # because a typo in config.toml must stop the daemon rather than be ignored.
    model_config = SettingsConfigDict(extra="forbid")

    desired_dir: Path = Field(
        default=Path("desired_state"), description="Directory of desired-state files (DIR)."
    )
    interval: float = Field(
        default=60.0, ge=0.1, le=86_400, description="Seconds between scheduled passes."
    )
    interval_jitter: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Up to this fraction of the interval is added at random to each pass.",
    )
    health_bind: str = Field(
        default="127.0.0.1:9440", description="HOST:PORT of /healthz, /readyz and /metrics."
    )
    shard_index: int = Field(default=0, ge=0, description="This replica's shard (0-based).")
    shard_count: int = Field(default=1, ge=1, le=10_000, description="Number of shards.")
    grace_period: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Seconds SIGTERM waits for in-flight machine operations before cancelling.",
    )
    lease_wait: float = Field(
        default=d.LEASE_WAIT,
        ge=0,
        le=3600,
        description="Seconds to wait for someone else's machine lease before moving on.",
    )
    max_in_flight: int = Field(
        default=d.MAX_IN_FLIGHT,
        ge=1,
        le=1000,
        description="Global cap on machine operations in flight, all apps (concurrency comes "
        "from each group's max_unavailable window; this only bounds the total).",
    )
    max_concurrent_apps: int = Field(
        default=d.MAX_CONCURRENT_APPS,
        ge=1,
        le=1000,
        description="Apps reconciled at the same time.",
    )
    watch: bool = Field(
        default=True,
        description="Reconcile when the desired-state directory changes (off: only on the "
        "interval and SIGHUP; the Helm chart then rolls the pod on a config checksum).",
    )
    watch_interval: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Seconds between looks at the desired-state directory for changes.",
    )
    alert_threshold: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="Consecutive failed passes before a condition alerts (auth and bad "
        "desired state alert at once).",
    )
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description="POST alerts here as JSON with a Slack-compatible text field (secret).",
    )
    alert_renotify_interval: float = Field(
        default=14_400.0,
        ge=0,
        description="Seconds between reminders of a still-firing alert (0: never).",
    )
    alert_webhook_timeout: float = Field(
        default=5.0, gt=0, le=120, description="Seconds per webhook delivery attempt."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="auto: readable lines on a terminal, JSON lines otherwise."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")
    paused_apps: tuple[str, ...] = Field(
        default=(),
        description="Apps the daemon leaves alone (--pause-app; a paused/<app> marker file in "
        "the desired-state directory does the same without a restart).",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings, dotenv_settings]
        config_file = _CONFIG_FILE.get()
        if config_file is not None:
            sources.append(_ConfigFileSource(settings_cls, config_file))
        return (*sources, file_secret_settings)

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("health_bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        parse_bind(value)
        return value.strip()

    @field_validator("alert_webhook_url")
    @classmethod
    def _check_webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The URL may embed a secret (Slack's do): never echo it.
            raise ValueError("alert_webhook_url must be an http(s) URL with a host")
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _check_shard(self) -> Self:
        if self.shard_index >= self.shard_count:
            raise ValueError(
                f"shard_index {self.shard_index} must be below shard_count {self.shard_count}"
            )
        return self

    @property
    def health_host(self) -> str:
        """The host part of :attr:`health_bind`."""
        return parse_bind(self.health_bind)[0]

    @property
    def health_port(self) -> int:
        """The port part of :attr:`health_bind` (0: any free port)."""
        return parse_bind(self.health_bind)[1]

    @property
    def jitter_seconds(self) -> float:
        """The largest random delay added to a scheduled pass."""
        return self.interval * self.interval_jitter


def config_file_in_use(
    explicit: Path | None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to read: ``--config``, else ``$MACHINE_RECONCILER_CONFIG``, else the
    default path when it exists.  A file named explicitly must exist."""
    env = os.environ if environ is None else environ
    named = (
        explicit
        if explicit is not None
        else (Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else None)
    )
    if named is not None:
        if not named.expanduser().is_file():
            raise ConfigError(f"config file not found: {named}")
        return named.expanduser()
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def settings_error(exc: ValidationError) -> str:
    """One line naming every invalid setting, never echoing a value (it may be a secret)."""
    parts: list[str] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "invalid setting " + "; ".join(parts)


def load_daemon_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    config_file: Path | None = None,
) -> DaemonSettings:
    """Build :class:`DaemonSettings`: ``overrides`` (CLI flags, ``None`` values dropped) >
    environment > config file > defaults.  Raises :class:`~controller.core.errors.ConfigError`
    with one line for any problem."""
    path = config_file_in_use(config_file)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    token = _CONFIG_FILE.set(path)
    try:
        return DaemonSettings(**given)
    except ValidationError as exc:
        raise ConfigError(settings_error(exc)) from None
    finally:
        _CONFIG_FILE.reset(token)
