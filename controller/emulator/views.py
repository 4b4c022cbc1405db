"""JSON renderings of machines, versions, volumes and apps, shaped like the API's responses.

Top-level machine fields the server adds (next to the config defaults in ``configs.py``):
``id`` (14 hex), ``version`` and its deprecated alias ``instance_id`` (same 26-char ULID),
``private_ip`` (fdaa: 6PN), ``image_ref``, ``created_at``/``updated_at`` (RFC 3339),
``events`` (newest first, at most 20 here; ``/events`` has up to 50), ``checks`` (runtime status),
``host_status: "ok"``, ``cordoned``, ``nonce`` (only in the create response when ``lease_ttl``
was given) and ``lease`` (only with ``include_leases``, without its nonce).  ``summary=true``
drops config, checks, events, host_status and nonce (FLY_API.md 1.1).
"""

from __future__ import annotations

import copy
from typing import Any

from controller.emulator import leases, lifecycle
from controller.emulator.model import App, Machine, Runtime, Version, Volume, rfc3339
from controller.emulator.store import Store

MACHINE_EVENTS_SHOWN = 20


def events(machine: Machine, limit: int = MACHINE_EVENTS_SHOWN) -> list[dict[str, Any]]:
    """The newest ``limit`` events, newest first."""
    return [event.to_json() for event in reversed(machine.events[-limit:])]


def machine(
    m: Machine,
    rt: Runtime,
    *,
    summary: bool = False,
    include_lease: bool = False,
    nonce: str | None = None,
) -> dict[str, Any]:
    """A ``Machine`` object as GET/list/create/update return it."""
    out: dict[str, Any] = {
        "id": m.id,
        "name": m.name,
        "state": m.state,
        "region": m.region,
        "instance_id": m.version,
        "version": m.version,
        "private_ip": m.private_ip,
        "image_ref": copy.deepcopy(m.image_ref),
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
        "cordoned": m.cordoned,
    }
    if not summary:
        out["config"] = copy.deepcopy(m.config)
        out["events"] = events(m)
        out["checks"] = lifecycle.check_statuses(m, rt)
        out["host_status"] = "ok"
        if nonce is not None:
            out["nonce"] = nonce
    if include_lease:
        live = m.live_lease(rt.now())
        if live is not None:
            out["lease"] = leases.stripped(live)
    return out


def old_version(m: Machine, version: Version) -> dict[str, Any]:
    """GET ?version=<old>: the replaced version's config, in terminal state ``replaced``."""
    return {
        "id": m.id,
        "name": m.name,
        "state": "replaced",
        "region": m.region,
        "instance_id": version.version,
        "version": version.version,
        "private_ip": m.private_ip,
        "config": copy.deepcopy(version.config),
        "created_at": rfc3339(m.created_at),
        "updated_at": rfc3339(m.updated_at),
        "host_status": "ok",
    }


def versions(m: Machine) -> list[dict[str, Any]]:
    """``[{version, user_config}]``, newest (current) first."""
    every = [*m.history, Version(m.version, m.config)]
    return [{"version": v.version, "user_config": copy.deepcopy(v.config)} for v in reversed(every)]


def volume(v: Volume) -> dict[str, Any]:
    """A ``Volume`` object; ``attached_machine_id`` only while attached (the spec has no nulls)."""
    blocks = v.size_gb * 1024 * 1024 // 4
    out: dict[str, Any] = {
        "id": v.id,
        "name": v.name,
        "state": v.state,
        "size_gb": v.size_gb,
        "region": v.region,
        "zone": v.zone,
        "encrypted": v.encrypted,
        "fstype": "ext4",
        "created_at": rfc3339(v.created_at),
        "host_status": "ok",
        "snapshot_retention": v.snapshot_retention,
        "auto_backup_enabled": v.auto_backup_enabled,
        "block_size": 4096,
        "blocks": blocks,
        "blocks_free": blocks,
        "blocks_avail": blocks,
    }
    if v.attached_machine_id is not None:
        out["attached_machine_id"] = v.attached_machine_id
    return out


def app(a: App) -> dict[str, Any]:
    """An ``App`` object (GET /apps/{app})."""
    return {
        "id": a.name,
        "name": a.name,
        "status": "deployed",
        "organization": {"name": a.org_slug, "slug": a.org_slug},
    }


def app_listing(a: App, store: Store) -> dict[str, Any]:
    """A ``ListApp`` entry (GET /apps?org_slug=).

    ``network`` is left out: the spec types it as an object (Go ``interface{}``) and its real
    value is not documented.
    """
    count = sum(1 for m in store.app_machines(a.name) if not m.destroyed)
    return {"id": a.name, "name": a.name, "machine_count": count}
