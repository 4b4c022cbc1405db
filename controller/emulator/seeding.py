"""Fixtures: put apps, volumes and machines straight into the store, bypassing API checks.

Used by ``POST /_emulator/seed``, scenario files and in-process tests to start from a given
(often drifted) fleet.  Seeded configs get the same server-side normalisation as created ones,
and machines appear directly in their requested settled state: a ``started`` machine has been
up long enough for its checks to report.  Capacity, quotas, rate limits and leases are not
applied; an app referenced by a volume or machine is created if missing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.emulator import apierrors, apps, capacity, configs, lifecycle, machines
from controller.emulator.store import Store


class SeedApp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    org_slug: str | None = None


class SeedVolume(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: str
    name: str
    region: str | None = None
    size_gb: int = Field(default=1, ge=1)
    id: str | None = None


class SeedMachine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    app: str
    config: dict[str, Any]
    state: Literal["created", "started", "stopped", "suspended", "destroyed"] = "started"
    region: str | None = None
    name: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    """Merged into ``config.metadata``."""
    id: str | None = None
    checks: Literal["auto", "passing", "failing"] = "auto"
    cordoned: bool = False


class SeedSpec(BaseModel):
    """The JSON shape of ``POST /_emulator/seed`` (and of scenario ``fixtures:``)."""

    model_config = ConfigDict(extra="forbid")
    apps: list[SeedApp] = Field(default_factory=list)
    volumes: list[SeedVolume] = Field(default_factory=list)
    machines: list[SeedMachine] = Field(default_factory=list)


def _ensure_app(store: Store, name: str, org: str | None = None) -> None:
    if name not in store.apps:
        apps.add_app(store, name, org or store.rt.behaviour.default_org_slug)


def _seed_machine(store: Store, spec: SeedMachine) -> dict[str, Any]:
    rt = store.rt
    _ensure_app(store, spec.app)
    config = dict(spec.config)
    config["metadata"] = {**(config.get("metadata") or {}), **spec.metadata}
    configs.validate(config)
    mount_region, volumes = capacity.resolve_mounts(
        store, app=spec.app, machine_id=None, config=config, region=spec.region
    )
    region = spec.region or mount_region or rt.behaviour.default_region
    name = spec.name or rt.ids.machine_name()
    stored = configs.normalise(config, volumes)
    if spec.id is not None and spec.id in store.machines:
        raise apierrors.bad_request(f"machine id already exists: {spec.id}")
    machine = machines.new_machine(
        store, spec.app, name=name, region=region, config=stored, machine_id=spec.id
    )
    machine.checks_mode = spec.checks
    machine.cordoned = spec.cordoned
    capacity.attach(store, machine.id, stored)
    lifecycle.record(machine, rt, "launch", "created")
    if spec.state in ("started", "stopped", "suspended"):
        lifecycle.record(machine, rt, "start", "started", source="flyd")
        machine.state = "started"
        machine.started_at = rt.now() - rt.behaviour.checks_pass_seconds
    if spec.state in ("stopped", "suspended"):
        machine.state = spec.state
        machine.started_at = None
        lifecycle.record(machine, rt, "stop" if spec.state == "stopped" else "suspend", spec.state)
    if spec.state == "destroyed":
        machine.state = "destroyed"
        store.detach_volumes(machine.id)
        lifecycle.record(machine, rt, "destroy", "destroyed")
    return {
        "id": machine.id,
        "app": machine.app,
        "name": machine.name,
        "region": machine.region,
        "state": machine.state,
        "version": machine.version,
    }


def seed(store: Store, spec: SeedSpec) -> dict[str, Any]:
    """Insert the fixtures; returns the created ids."""
    for app in spec.apps:
        if app.name in store.apps:
            raise apierrors.generic(422, f"app already exists: {app.name}", "name_taken")
        _ensure_app(store, app.name, app.org_slug)
    volumes = []
    for v in spec.volumes:
        _ensure_app(store, v.app)
        if v.id is not None and v.id in store.volumes:
            raise apierrors.bad_request(f"volume id already exists: {v.id}")
        region = v.region or store.rt.behaviour.default_region
        volume = apps.add_volume(
            store, v.app, name=v.name, region=region, size_gb=v.size_gb, volume_id=v.id
        )
        volumes.append({"id": volume.id, "app": volume.app, "name": volume.name})
    seeded = [_seed_machine(store, m) for m in spec.machines]
    return {"apps": [a.name for a in spec.apps], "volumes": volumes, "machines": seeded}
