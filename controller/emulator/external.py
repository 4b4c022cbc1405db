"""Simulated outside writers: someone else updating a machine or holding its lease.

Reconcilers must survive other actors (flyctl, the dashboard, platform components such as
fly-proxy holding leases: FLY_API.md 1.7, 6.1).  Two kinds:

* ``bump_version``: an outside update creates a new version now.  By default it sets
  ``config.env.EMULATOR_EXTERNAL_BUMP`` to a counter (visible drift); ``patch`` deep-merges a
  config fragment instead.  A running machine restarts as for any update; a stopped one stays
  stopped.  Leases are ignored (the writer is assumed to hold its own).
* ``hold_lease``: ``owner`` (default ``someone-else@fly.io``) takes the machine's lease for
  ``seconds``.  It replaces a live lease unless ``if_free`` is set: then, like any real client,
  it only takes a free lease and otherwise does nothing (``{"skipped": true}``), so chaos tests
  can hold leases at random moments without "stealing" the controller's own.

``on: "now"`` (default) applies immediately; ``"next_lease"`` / ``"next_update"`` wait for the
next lease request or update of that machine and apply just *before* it is handled, i.e. between
the client's read and its write.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.emulator import configs, leases, lifecycle, machines
from controller.emulator.store import Store

Trigger = Literal["now", "next_lease", "next_update"]


class ExternalWriterSpec(BaseModel):
    """The JSON shape of ``POST /_emulator/external-writers``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["bump_version", "hold_lease"]
    app: str
    machine_id: str
    on: Trigger = "now"
    seconds: float = Field(default=60.0, gt=0)
    owner: str = "someone-else@fly.io"
    patch: dict[str, Any] | None = None
    if_free: bool = False


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class ExternalWriters:
    pending: list[tuple[str, ExternalWriterSpec]] = field(default_factory=list)
    bumps: int = 0
    _next: int = 0

    def submit(self, store: Store, spec: ExternalWriterSpec) -> dict[str, Any]:
        """Apply now, or queue for the trigger; returns a description of what happened."""
        store.writable(spec.app, spec.machine_id)
        if spec.on != "now":
            self._next += 1
            writer_id = f"writer-{self._next}"
            self.pending.append((writer_id, spec))
            return {"id": writer_id, "pending": True, **spec.model_dump()}
        return {"pending": False, **self.apply(store, spec)}

    def fire(self, store: Store, app: str, machine_id: str, trigger: Trigger) -> None:
        """Apply (and forget) every writer queued for this machine and trigger."""
        due = [
            (wid, s)
            for wid, s in self.pending
            if s.on == trigger and s.app == app and s.machine_id == machine_id
        ]
        if not due:
            return
        self.pending = [p for p in self.pending if p not in due]
        for _, spec in due:
            if spec.machine_id in store.machines and spec.app in store.apps:
                self.apply(store, spec)

    def apply(self, store: Store, spec: ExternalWriterSpec) -> dict[str, Any]:
        machine = store.writable(spec.app, spec.machine_id)
        if spec.kind == "hold_lease":
            if spec.if_free and machine.live_lease(store.rt.now()) is not None:
                return {"kind": spec.kind, "skipped": True}
            lease = leases.grant(machine, store.rt, owner=spec.owner, ttl=spec.seconds)
            return {"kind": spec.kind, "nonce": lease.nonce, "owner": lease.owner}
        self.bumps += 1
        if spec.patch is not None:
            config = _merge(machine.config, spec.patch)
        else:
            config = copy.deepcopy(machine.config)
            config.setdefault("env", {})["EMULATOR_EXTERNAL_BUMP"] = str(self.bumps)
        configs.validate(config)
        stored = configs.normalise(config, _mounted_volumes(store, config))
        machines.replace_config(store, machine, stored)
        lifecycle.record(machine, store.rt, "update", "replacing")
        running = machine.state in machines.RUNNING
        machines.reboot_for_update(store, machine, skip_launch=not running)
        return {"kind": spec.kind, "version": machine.version}

    def to_json(self) -> list[dict[str, Any]]:
        return [{"id": wid, **spec.model_dump()} for wid, spec in self.pending]


def _mounted_volumes(store: Store, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Name/size of the volumes a config mounts, for normalisation (no placement checks)."""
    volumes: dict[str, dict[str, Any]] = {}
    for mount in config.get("mounts") or []:
        volume = store.volumes.get(mount.get("volume", ""))
        if volume is not None:
            volumes[volume.id] = {"name": volume.name, "size_gb": volume.size_gb}
    return volumes
