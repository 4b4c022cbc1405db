"""Typed views of Machines API responses (SPEC-2025 fields plus the SPEC-NEW ones we use).

Every model is frozen and keeps unknown fields (``extra="allow"``) so a newer API never breaks
parsing.  ``Machine.config`` stays the raw dict the API returned: the planner has its own typed
and normalised view of it, and a lossy model here would reintroduce the Terraform provider's
perpetual-diff bug (FLY_API.md 6.9).  Absent fields get neutral defaults; ``version`` falls back
to the deprecated ``instance_id`` (the same value, FLY_API.md 2).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

__all__ = [
    "ActionResult",
    "App",
    "CheckStatus",
    "ImageRef",
    "Lease",
    "Machine",
    "MachineEvent",
    "MachinesPage",
    "Organization",
    "WaitResult",
]


def _unix_seconds(value: object) -> object:
    """Accept unix seconds as int, float or numeric string, or an RFC 3339 string."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return value  # let pydantic report it
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp())
    return value


def _none_as_empty(value: object) -> object:
    return {} if value is None else value


def _none_as_empty_list(value: object) -> object:
    return [] if value is None else value


UnixSeconds = Annotated[int | None, BeforeValidator(_unix_seconds)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class CheckStatus(_Model):
    """One health check's runtime status."""

    name: str = ""
    status: str = ""
    output: str = ""
    updated_at: str | None = None


class MachineEvent(_Model):
    """An entry of ``Machine.events`` (its ``id`` works as ``from_event_id`` on newer APIs)."""

    id: str | None = None
    type: str | None = None
    status: str | None = None
    source: str | None = None
    timestamp: int | None = None
    request: Any = None


class ImageRef(_Model):
    """The resolved image: what actually runs, as opposed to ``config.image`` as requested."""

    registry: str | None = None
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None
    labels: dict[str, str] | None = None


class Lease(_Model):
    """A machine lease.  ``expires_at`` is unix seconds; ``nonce`` is absent on stripped leases
    (``include_leases=true`` listings) and on other holders' leases."""

    nonce: str | None = None
    expires_at: UnixSeconds = None
    owner: str | None = None
    description: str | None = None
    version: str | None = None

    @property
    def expires_at_datetime(self) -> datetime | None:
        """``expires_at`` as an aware UTC datetime."""
        if self.expires_at is None:
            return None
        return datetime.fromtimestamp(self.expires_at, tz=UTC)


class Machine(_Model):
    """A Fly Machine as returned by get, list, create and update."""

    id: str
    name: str = ""
    state: str = ""
    region: str = ""
    version: str | None = None
    instance_id: str | None = None
    private_ip: str | None = None
    config: Annotated[dict[str, Any], BeforeValidator(_none_as_empty)] = Field(default_factory=dict)
    image_ref: ImageRef | None = None
    checks: Annotated[list[CheckStatus], BeforeValidator(_none_as_empty_list)] = Field(
        default_factory=list
    )
    events: Annotated[list[MachineEvent], BeforeValidator(_none_as_empty_list)] = Field(
        default_factory=list
    )
    host_status: str | None = None
    lease: Lease | None = None
    nonce: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _version_from_instance_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("version") and data.get("instance_id"):
            return {**data, "version": data["instance_id"]}
        return data

    @property
    def metadata(self) -> dict[str, str]:
        """``config.metadata`` (where our identity labels live), or an empty dict."""
        raw = self.config.get("metadata")
        if not isinstance(raw, dict):
            return {}
        return {str(k): str(v) for k, v in raw.items()}


class MachinesPage(_Model):
    """One page of a listing; ``next_cursor`` (header ``fly-next-cursor``) is None at the end."""

    machines: tuple[Machine, ...] = ()
    next_cursor: str | None = None


class WaitResult(_Model):
    """The answer of ``/wait`` when the state was reached (older APIs send only ``ok``)."""

    ok: bool = True
    state: str | None = None
    version: str | None = None
    event_id: str | None = None


class ActionResult(_Model):
    """The small body of start/stop/destroy: ``{ok}`` or ``{message, status, previous_state}``."""

    ok: bool | None = None
    message: str | None = None
    status: str | None = None
    previous_state: str | None = None


class Organization(_Model):
    """An organization as embedded in :class:`App`."""

    name: str | None = None
    slug: str | None = None


class App(_Model):
    """A Fly app."""

    id: str | None = None
    name: str = ""
    status: str | None = None
    organization: Organization | None = None


class Volume(_Model):
    """A Fly volume (single-attach: ``attached_machine_id`` is its one machine, if any)."""

    id: str
    name: str = ""
    state: str = ""
    region: str = ""
    size_gb: int | None = None
    encrypted: bool | None = None
    attached_machine_id: str | None = None
    created_at: str | None = None
