"""Volumes for the machines of groups with ``mounts:`` (one volume per machine).

Fly volumes attach to one machine at a time, so every slot needs its own, in its region.
Before a create, :class:`VolumePicker` finds an unattached volume of the declared name in the
slot's region (one a destroyed machine left behind: its data comes back with the slot) or
makes a new one, and returns the create's config with ``mounts: [{volume, path}]``.  The
volumes one run has handed out are remembered, and choosing is serialised per app, so two
concurrent creates never pick the same volume.  Volumes are never destroyed here; a destroy
with ``prune_volumes: true`` destroys them after the machine
(:mod:`controller.execution.destroying`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from controller.flyapi import MachinesClient, Volume
from controller.planning.plan import Create

__all__ = ["VolumePicker"]


class VolumePicker:
    """Finds or makes the volumes of one app's creates during one run."""

    def __init__(self, client: MachinesClient, app: str) -> None:
        self.client = client
        self.app = app
        self._lock = anyio.Lock()
        self._claimed: set[str] = set()

    async def config_for(self, action: Create) -> Mapping[str, Any]:
        """``action.config`` with its volumes mounted (unchanged without ``mounts``)."""
        if not action.mounts:
            return action.config
        mounts = []
        async with self._lock:
            volumes = await self.client.list_volumes(self.app)
            for mount in action.mounts:
                spec = mount.volume
                volume = self._free(volumes, spec.name, action.region)
                if volume is None:
                    volume = await self.client.create_volume(
                        self.app,
                        name=spec.name,
                        region=action.region,
                        size_gb=spec.size_gb,
                        encrypted=spec.encrypted,
                    )
                self._claimed.add(volume.id)
                mounts.append({"volume": volume.id, "path": mount.path})
        return {**action.config, "mounts": mounts}

    def _free(self, volumes: tuple[Volume, ...], name: str, region: str) -> Volume | None:
        free = [
            v
            for v in volumes
            if v.name == name
            and v.region == region
            and v.state in ("created", "")
            and not v.attached_machine_id
            and v.id not in self._claimed
        ]
        return min(free, key=lambda v: (v.created_at or "", v.id)) if free else None
