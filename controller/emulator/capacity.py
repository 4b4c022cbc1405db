"""Placement rules: region memory budgets, org quotas and volume attachment (FLY_API.md 1.11, 3.2).

* Region capacity: ``Behaviour.region_capacity_mb[region]`` bounds the summed ``guest.memory_mb``
  of non-destroyed machines (every app, every org) in that region.  Over budget, a create gets
  422 ``insufficient_capacity`` and an update that grows memory gets 409 "aborted: could not
  reserve resource for machine" (the host cannot take the larger size).
* Org machine limit: ``Behaviour.org_machine_limit`` non-destroyed machines per org -> 422.
* Org regional memory quota: ``Behaviour.org_region_quota_mb`` -> 403 "over the allowed quota".
* Volumes: a mount names a volume of the same app; the machine lands in the volume's region; a
  volume attached to another live machine -> 412 ``volume_placement_capacity``; an unknown
  volume -> 400 "volume not found" (Kilo-Org/cloud #3212); a region other than the volume's ->
  400 (text chosen).

Create checks run in this order: volumes, org limit, regional quota, region capacity.
"""

from __future__ import annotations

from typing import Any

from controller.emulator import apierrors, configs
from controller.emulator.store import Store


def _memory(store: Store, *, region: str, org: str | None = None) -> int:
    total = 0
    for machine in store.live_machines():
        if machine.region != region:
            continue
        if org is not None and store.apps[machine.app].org_slug != org:
            continue
        total += configs.memory_mb(machine.config)
    return total


def check_create(store: Store, *, org: str, region: str, memory_mb: int) -> None:
    """Org limit (422), regional quota (403) and region capacity (422) for a new machine."""
    behaviour = store.rt.behaviour
    limit = behaviour.org_machine_limit
    if limit is not None:
        count = sum(1 for m in store.live_machines() if store.apps[m.app].org_slug == org)
        if count + 1 > limit:
            raise apierrors.machine_limit()
    quota = behaviour.org_region_quota_mb.get(region)
    if quota is not None:
        used = _memory(store, region=region, org=org)
        if used + memory_mb > quota:
            raise apierrors.regional_quota(org, used, region)
    budget = behaviour.region_capacity_mb.get(region)
    if budget is not None and _memory(store, region=region) + memory_mb > budget:
        raise apierrors.insufficient_capacity()


def check_update(store: Store, *, region: str, old_mb: int, new_mb: int) -> None:
    """409 when an update grows memory beyond what the region has left."""
    budget = store.rt.behaviour.region_capacity_mb.get(region)
    if budget is None or new_mb <= old_mb:
        return
    if _memory(store, region=region) - old_mb + new_mb > budget:
        raise apierrors.capacity_on_update()


def resolve_mounts(
    store: Store, *, app: str, machine_id: str | None, config: dict[str, Any], region: str | None
) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """Check a config's mounts; returns the volumes' region and their name/size for defaults."""
    volumes: dict[str, dict[str, Any]] = {}
    mount_region: str | None = region
    for mount in config.get("mounts") or []:
        volume_id = mount["volume"]
        volume = store.volumes.get(volume_id)
        if volume is None or volume.app != app or volume.state != "created":
            raise apierrors.bad_request(f"volume not found: {volume_id}")
        if mount_region is not None and volume.region != mount_region:
            raise apierrors.bad_request(
                f"volume {volume_id} is in region {volume.region}, not {mount_region}"
            )
        mount_region = volume.region
        holder = volume.attached_machine_id
        if holder is not None and holder != machine_id:
            other = store.machines.get(holder)
            if other is not None and not other.destroyed:
                raise apierrors.volume_in_use(volume_id)
        volumes[volume_id] = {"name": volume.name, "size_gb": volume.size_gb}
    return mount_region, volumes


def attach(store: Store, machine_id: str, config: dict[str, Any]) -> None:
    """Point the config's volumes at the machine, and release volumes it no longer mounts."""
    wanted = {mount["volume"] for mount in config.get("mounts") or []}
    for volume in store.volumes.values():
        if volume.id in wanted:
            volume.attached_machine_id = machine_id
        elif volume.attached_machine_id == machine_id:
            volume.attached_machine_id = None
