"""The endpoint table and the request-shaping helpers of :class:`MachinesClient`.

Each :class:`~controller.flyapi.exchange.Endpoint` names an API operation for metrics
(``machines.update``), picks its rate-limit class and says whether repeating it after an
ambiguous failure is harmless (see :mod:`controller.flyapi.client` for the reasoning).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from controller.flyapi.exchange import NONCE_HEADER, Endpoint

__all__ = [
    "ENDPOINTS",
    "WAIT_MAX_SECONDS",
    "WAIT_MIN_SECONDS",
    "app_path",
    "env_values",
    "list_params",
    "machine_path",
    "machine_scope",
    "nonce_header",
    "wait_seconds",
]

#: ``/wait`` blocks at most 60 s server side and rejects anything outside 1..60 s.
WAIT_MIN_SECONDS = 1
WAIT_MAX_SECONDS = 60
#: Fly's documented page-size bounds for ``limit``.
PAGE_MIN, PAGE_MAX = 1, 1000

ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint("apps.get", "GET", "read", idempotent=True),
        Endpoint("apps.create", "POST", "action", idempotent=False),
        Endpoint("machines.list", "GET", "read", idempotent=True),
        Endpoint("machines.get", "GET", "read", idempotent=True),
        Endpoint("machines.create", "POST", "action", idempotent=False),
        # Per call: idempotent exactly when current_version is sent.
        Endpoint("machines.update", "POST", "action", idempotent=False),
        Endpoint("machines.start", "POST", "action", idempotent=False),
        Endpoint("machines.stop", "POST", "action", idempotent=False),
        Endpoint("machines.restart", "POST", "action", idempotent=False),
        Endpoint("machines.metadata.set", "POST", "action", idempotent=True),
        Endpoint("machines.destroy", "DELETE", "action", idempotent=True),
        Endpoint("machines.wait", "GET", "action", idempotent=True),
        Endpoint("volumes.list", "GET", "read", idempotent=True),
        Endpoint("volumes.create", "POST", "action", idempotent=False),
        Endpoint("volumes.destroy", "DELETE", "action", idempotent=True),
        Endpoint("leases.get", "GET", "read", idempotent=True),
        # Acquire and refresh are the same Fly action (POST .../lease): one rate bucket.
        Endpoint("leases.acquire", "POST", "action", idempotent=False, bucket="leases.post"),
        Endpoint("leases.refresh", "POST", "action", idempotent=True, bucket="leases.post"),
        Endpoint("leases.release", "DELETE", "action", idempotent=True),
    )
}


def _seg(value: str) -> str:
    if not value:
        raise ValueError("app names and machine ids must be non-empty")
    return quote(value, safe="")


def app_path(app: str) -> str:
    """``/v1/apps/{app}`` with the name percent-encoded."""
    return f"/v1/apps/{_seg(app)}"


def machine_path(app: str, machine_id: str) -> str:
    """``/v1/apps/{app}/machines/{id}``."""
    return f"{app_path(app)}/machines/{_seg(machine_id)}"


def machine_scope(app: str, machine_id: str) -> str:
    """The rate-limit scope of a per-machine call."""
    return f"{app}/{machine_id}"


def nonce_header(nonce: str | None) -> dict[str, str]:
    """``{"fly-machine-lease-nonce": nonce}``, or nothing without a nonce."""
    return {NONCE_HEADER: nonce} if nonce else {}


def env_values(config: Mapping[str, Any]) -> list[str]:
    """String values of ``config.env``: scrubbed from any error text the server echoes."""
    env = config.get("env")
    if not isinstance(env, Mapping):
        return []
    return [v for v in env.values() if isinstance(v, str)]


def csv(value: str | Sequence[str]) -> str:
    """A state filter as Fly wants it: one comma-separated string."""
    return value if isinstance(value, str) else ",".join(value)


def wait_seconds(timeout: float) -> int:
    """Whole seconds in 1..60 (rounded up), as ``/wait`` accepts."""
    if not math.isfinite(timeout):
        return WAIT_MAX_SECONDS
    return max(WAIT_MIN_SECONDS, min(WAIT_MAX_SECONDS, math.ceil(timeout)))


def list_params(
    *,
    region: str | None,
    state: str | Sequence[str] | None,
    metadata: Mapping[str, str] | None,
    include_deleted: bool,
    summary: bool,
    include_leases: bool,
    limit: int | None,
    cursor: str | None,
) -> list[tuple[str, str]]:
    """Query parameters of list machines; false flags are omitted (SPEC-2025 knows only four)."""
    params: list[tuple[str, str]] = []
    if include_deleted:
        params.append(("include_deleted", "true"))
    if region:
        params.append(("region", region))
    if state:
        params.append(("state", csv(state)))
    if summary:
        params.append(("summary", "true"))
    if include_leases:
        params.append(("include_leases", "true"))
    for key, value in (metadata or {}).items():
        params.append((f"metadata.{key}", value))
    if limit is not None:
        params.append(("limit", str(max(PAGE_MIN, min(PAGE_MAX, limit)))))
    if cursor:
        params.append(("cursor", cursor))
    return params
