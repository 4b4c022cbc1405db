"""Observed state: the minimal frozen snapshot of a live machine that the planner needs.

The API client maps its response models into :class:`LiveMachine` (or calls
:meth:`LiveMachine.from_api` on the raw JSON object); nothing here knows about HTTP.

This module also owns the **identity metadata** the reconciler writes into every machine's
``config.metadata`` (DESIGN.md section 3)::

    reconciler/managed = "true"                 the machine is ours (absent: never touched)
    reconciler/group   = <group>                the desired group it belongs to
    reconciler/slot    = <group>-<region>-<n>   its stable identity; n counts from 0
    reconciler/spec    = <spec hash>            hash of the canonical desired config last applied
    reconciler/launch  = <uuid>                 idempotency tag written once, at create

The slot is parsed from the right (``rsplit("-", 2)``), so group names may contain ``-``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GONE_STATES",
    "GROUP_KEY",
    "IDENTITY_KEYS",
    "LAUNCH_KEY",
    "MANAGED_KEY",
    "MANAGED_VALUE",
    "RECONCILER_PREFIX",
    "RESTART_KEY",
    "SLOT_KEY",
    "SPEC_KEY",
    "CheckStatus",
    "LiveMachine",
    "SlotId",
    "format_slot",
    "parse_slot",
]

RECONCILER_PREFIX = "reconciler/"
MANAGED_KEY = "reconciler/managed"
GROUP_KEY = "reconciler/group"
SLOT_KEY = "reconciler/slot"
SPEC_KEY = "reconciler/spec"
LAUNCH_KEY = "reconciler/launch"
RESTART_KEY = "reconciler_restart_generation"
"""The group's ``restart_generation`` last applied to the machine (a restart, a create or an
update): a different desired value plans a restart.  Written after a restart through the
metadata API (``POST .../metadata/{key}``), whose path cannot carry a ``/``: hence no
``reconciler/`` prefix."""
MANAGED_VALUE = "true"
IDENTITY_KEYS = (MANAGED_KEY, GROUP_KEY, SLOT_KEY, SPEC_KEY, LAUNCH_KEY)

GONE_STATES = frozenset({"destroying", "destroyed", "replaced", "migrated"})
"""States of machines (or machine versions) that no longer count (FLY_API.md section 2)."""


@dataclass(frozen=True, slots=True, order=True)
class SlotId:
    """A parsed ``reconciler/slot`` value; orders by (group, region, index)."""

    group: str
    region: str
    index: int

    def __str__(self) -> str:
        return format_slot(self.group, self.region, self.index)


def format_slot(group: str, region: str, index: int) -> str:
    """The slot identity string ``<group>-<region>-<n>``."""
    return f"{group}-{region}-{index}"


def parse_slot(value: str | None) -> SlotId | None:
    """Parse ``<group>-<region>-<n>``; None when the value is missing or malformed."""
    if not value:
        return None
    parts = value.rsplit("-", 2)
    if len(parts) != 3:
        return None
    group, region, index = parts
    if not group or len(region) != 3 or not index.isdigit() or not index.isascii():
        return None
    if index != str(int(index)):  # "01" is not a slot we would have written
        return None
    return SlotId(group, region, int(index))


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """One runtime check result (``Machine.checks[]``); the output text is not kept."""

    name: str
    status: str


_EMPTY: Mapping[str, str] = {}


@dataclass(frozen=True, slots=True)
class LiveMachine:
    """A live machine as the planner sees it.  ``config`` is Fly's returned config, read-only."""

    id: str
    region: str
    state: str
    version: str
    config: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)
    name: str = ""
    checks: tuple[CheckStatus, ...] = ()
    created_at: str = ""
    """RFC 3339 text as Fly sends it; compared as text to find the newest of duplicates."""
    image_digest: str | None = None
    """The digest Fly resolved ``config.image`` to (``image_ref.digest``): what really runs, so a
    plan can show it next to a tag that may have moved."""

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> LiveMachine:
        """Build from a ``Machine`` JSON object (``version`` falls back to ``instance_id``)."""
        checks = tuple(
            CheckStatus(name=str(c.get("name", "")), status=str(c.get("status", "")))
            for c in data.get("checks") or ()
            if isinstance(c, Mapping)
        )
        config = data.get("config")
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or ""),
            region=str(data.get("region") or ""),
            state=str(data.get("state") or ""),
            version=str(data.get("version") or data.get("instance_id") or ""),
            config=config if isinstance(config, Mapping) else {},
            checks=checks,
            created_at=str(data.get("created_at") or ""),
            image_digest=_digest(data.get("image_ref")),
        )

    @property
    def metadata(self) -> Mapping[str, str]:
        """``config.metadata`` (empty when absent)."""
        metadata = self.config.get("metadata")
        return metadata if isinstance(metadata, Mapping) else _EMPTY

    @property
    def managed(self) -> bool:
        """Carries ``reconciler/managed=true``: the reconciler owns it."""
        return self.metadata.get(MANAGED_KEY) == MANAGED_VALUE

    @property
    def group(self) -> str | None:
        """``reconciler/group``."""
        return self.metadata.get(GROUP_KEY)

    @property
    def slot(self) -> str | None:
        """``reconciler/slot`` as stored."""
        return self.metadata.get(SLOT_KEY)

    @property
    def spec(self) -> str | None:
        """``reconciler/spec``: hash of the config last applied."""
        return self.metadata.get(SPEC_KEY)

    @property
    def launch(self) -> str | None:
        """``reconciler/launch``: the create's idempotency tag."""
        return self.metadata.get(LAUNCH_KEY)

    @property
    def gone(self) -> bool:
        """Destroyed or on its way out: ignored by the planner."""
        return self.state in GONE_STATES


def _digest(image_ref: object) -> str | None:
    """``image_ref.digest`` when the API resolved one."""
    if isinstance(image_ref, Mapping):
        digest = image_ref.get("digest")
        if isinstance(digest, str) and digest:
            return digest
    return None
