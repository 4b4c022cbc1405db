"""Plain records for the emulator's in-memory world: apps, machines, versions, leases, volumes.

These are mutable dataclasses with no behaviour beyond small helpers; the rules live in
``lifecycle.py`` (timed state transitions), ``machines.py`` (API operations), ``leases.py`` and
``capacity.py``.  :class:`Runtime` bundles the three injected things every rule needs: the
clock, the seeded id generator and the current :class:`Behaviour`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from controller.clock import Clock
from controller.emulator.behaviour import Behaviour
from controller.emulator.ids import IdGenerator


def rfc3339(wall: float) -> str:
    """``2024-02-22T01:22:58Z`` for a unix time."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Runtime:
    """The injected clock, ids and behaviour, shared by every part of the emulator."""

    clock: Clock
    ids: IdGenerator
    behaviour: Behaviour
    request_ids: IdGenerator
    """A separate generator for ``fly-request-id`` values, so control calls never shift ids."""

    def now(self) -> float:
        """Monotonic clock time: the timeline every transition and TTL is computed on."""
        return self.clock.monotonic()

    def wall(self, mono: float | None = None) -> float:
        """Unix time of a monotonic instant (default: now)."""
        if mono is None:
            return self.clock.now()
        return self.clock.now() - (self.clock.monotonic() - mono)


@dataclass
class Step:
    """One timed transition: the machine shows ``transient`` for ``duration``, then ``final``."""

    transient: str
    duration: float
    final: str
    event: str


@dataclass
class Event:
    id: str
    type: str
    status: str
    source: str
    timestamp: int
    request: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "source": self.source,
            "timestamp": self.timestamp,
        }
        if self.request is not None:
            out["request"] = self.request
        return out


@dataclass
class Lease:
    nonce: str
    owner: str
    description: str
    version: str
    expires_mono: float
    expires_at: int
    """Unix seconds, as the API shows it."""

    def live(self, now: float) -> bool:
        return now < self.expires_mono


@dataclass
class Version:
    version: str
    config: dict[str, Any]


@dataclass
class Secret:
    """An app secret; the value is kept only to compute its digest (the API never returns it)."""

    name: str
    digest: str
    created_at: float
    updated_at: float


@dataclass
class App:
    name: str
    org_slug: str
    network: int
    created_at: float
    secrets: dict[str, Secret] = field(default_factory=dict)
    secrets_version: int = 0
    """Bumped by every secrets write; creates/updates may require it (``min_secrets_version``)."""


@dataclass
class Snapshot:
    id: str
    created_at: float
    size: int
    digest: str
    retention_days: int
    status: str = "created"


@dataclass
class Volume:
    id: str
    app: str
    name: str
    region: str
    size_gb: int
    zone: str
    created_at: float
    encrypted: bool = True
    attached_machine_id: str | None = None
    state: str = "created"
    snapshot_retention: int = 5
    auto_backup_enabled: bool = True
    snapshots: list[Snapshot] = field(default_factory=list)


@dataclass
class Machine:
    id: str
    app: str
    name: str
    region: str
    private_ip: str
    config: dict[str, Any]
    image_ref: dict[str, Any]
    version: str
    seq: int
    created_mono: float
    created_at: float
    updated_at: float
    state: str = "created"
    steps: list[Step] = field(default_factory=list)
    step_started_at: float = 0.0
    started_at: float | None = None
    restart_count: int = 0
    cordoned: bool = False
    lease: Lease | None = None
    history: list[Version] = field(default_factory=list)
    """Replaced versions, oldest first (the current one is ``version``/``config``)."""
    events: list[Event] = field(default_factory=list)
    """Oldest first, capped."""
    checks_mode: str = "auto"
    """``auto`` (decided by config), ``passing`` or ``failing`` (set via the control API)."""

    def live_lease(self, now: float) -> Lease | None:
        if self.lease is not None and self.lease.live(now):
            return self.lease
        return None

    @property
    def destroyed(self) -> bool:
        return self.state == "destroyed"
