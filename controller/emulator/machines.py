"""Machine operations: create, update, start/stop/suspend/restart, destroy, cordon, metadata.

Each function validates like the real API (FLY_API.md 1.3-1.8), mutates the store, queues timed
transitions through ``lifecycle`` and returns the machine.  Lease checks come first on every
write (409 in the lease envelope), then version checks, then placement.  Choices where Fly is
silent (all documented here so clients can be tested against a fixed behaviour):

* start on a started/starting machine -> 412 "unable to start machine from current state";
  suspend/restart on a machine that is not started -> 412 likewise;
* stop on a machine that is already stopped/created is a 200 no-op; on a suspended one it
  discards the snapshot (-> ``stopped``);
* destroy without ``force`` (``kill`` accepted as an alias, fly-go sends it) on a machine that is
  not stopped/created/suspended/failed -> 412 "unable to destroy machine, not currently stopped
  or suspended" (suspended machines may be destroyed, flyctl PR #3771);
* update of a running machine: ``stopping`` -> ``starting`` -> ``started`` (or stays
  ``stopped`` with ``skip_launch``); of a stopped/created machine: boots unless ``skip_launch``;
* metadata endpoints edit ``config.metadata`` in place without creating a new version;
* writes to a destroyed machine -> 404, to a destroying one -> 412.
"""

from __future__ import annotations

from typing import Any

from controller.emulator import apierrors, capacity, configs, leases, lifecycle, regions, secrets
from controller.emulator.model import Lease, Machine, Step, Version
from controller.emulator.store import Store

RUNNING = ("started", "starting", "restarting")
STOPPED_LIKE = ("stopped", "created", "suspended", "failed")


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise apierrors.bad_request("request body must be a JSON object")
    return body


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise apierrors.bad_request(f"json: cannot unmarshal {type(value).__name__} into {key}")
    return value


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise apierrors.bad_request(f"invalid {key}: must be a positive integer")
    return value


def _starting(store: Store) -> Step:
    return Step("starting", store.rt.behaviour.boot_seconds, "started", "start")


def _stopping(store: Store) -> Step:
    return Step("stopping", store.rt.behaviour.stop_seconds, "stopped", "stop")


def create(store: Store, app_name: str, body: Any, *, owner: str) -> tuple[Machine, Lease | None]:
    """POST /apps/{app}/machines: validate, place, store, boot unless ``skip_launch``."""
    rt = store.rt
    app = store.app(app_name)
    body = _object(body)
    config = configs.validate(body.get("config"))
    skip_launch = _flag(body, "skip_launch")
    cordoned = _flag(body, "skip_service_registration")
    lease_ttl = _optional_int(body, "lease_ttl")
    region = body.get("region") or None
    if region is not None and not isinstance(region, str):
        raise apierrors.bad_request("invalid region")
    if region is not None:
        regions.check_region(region)
    secrets.check_min_version(app, body)
    name = body.get("name") or rt.ids.machine_name()
    mount_region, volumes = capacity.resolve_mounts(
        store, app=app.name, machine_id=None, config=config, region=region
    )
    region = region or mount_region or rt.behaviour.default_region
    stored = configs.normalise(config, volumes)
    capacity.check_create(
        store, org=app.org_slug, region=region, memory_mb=configs.memory_mb(stored)
    )
    machine = new_machine(store, app_name, name=str(name), region=region, config=stored)
    machine.cordoned = cordoned
    capacity.attach(store, machine.id, stored)
    lifecycle.record(machine, rt, "launch", "created")
    if not skip_launch:
        lifecycle.begin(machine, rt, [_starting(store)])
    lease = None
    if lease_ttl is not None:
        lease = leases.grant(machine, rt, owner=owner, ttl=lease_ttl)
    return machine, lease


def new_machine(
    store: Store,
    app_name: str,
    *,
    name: str,
    region: str,
    config: dict[str, Any],
    machine_id: str | None = None,
) -> Machine:
    """Insert a machine record in state ``created`` (no checks; used by create and seeding)."""
    rt = store.rt
    app = store.apps[app_name]
    now, wall = rt.now(), rt.wall()
    machine = Machine(
        id=machine_id or rt.ids.machine_id(),
        app=app_name,
        name=name,
        region=region,
        private_ip=rt.ids.private_ip(app.network),
        config=config,
        image_ref=configs.image_ref(config["image"]),
        version=rt.ids.ulid(),
        seq=store.next_seq(),
        created_mono=now,
        created_at=wall,
        updated_at=wall,
    )
    store.add_machine(machine)
    return machine


def replace_config(store: Store, machine: Machine, config: dict[str, Any]) -> None:
    """Record the current version as replaced and install ``config`` as a new version."""
    rt = store.rt
    machine.history.append(Version(machine.version, machine.config))
    machine.version = rt.ids.ulid()
    machine.config = config
    machine.image_ref = configs.image_ref(config["image"])
    machine.updated_at = rt.wall()
    capacity.attach(store, machine.id, config)


def reboot_for_update(store: Store, machine: Machine, *, skip_launch: bool) -> None:
    """Apply a new version to the running process (DOCS-MACH: a running machine reboots)."""
    rt = store.rt
    if lifecycle.target_state(machine) in RUNNING or machine.state in RUNNING:
        steps = [_stopping(store)] if skip_launch else [_stopping(store), _starting(store)]
        lifecycle.begin(machine, rt, steps)
    elif skip_launch:
        if machine.state == "suspended":
            machine.state = "stopped"
    elif machine.steps:
        machine.steps.append(_starting(store))
    else:
        lifecycle.begin(machine, rt, [_starting(store)])


def update(
    store: Store, app_name: str, machine_id: str, body: Any, *, nonce: str | None
) -> Machine:
    """POST /apps/{app}/machines/{id}: full replacement with a new version (FLY_API.md 1.4)."""
    rt = store.rt
    machine = store.writable(app_name, machine_id)
    leases.check_write(machine, rt, nonce)
    body = _object(body)
    current_version = body.get("current_version")
    if current_version and current_version != machine.version:
        raise apierrors.version_mismatch(str(current_version), machine.version)
    config = configs.validate(body.get("config"))
    for field in ("region", "name"):
        value = body.get(field)
        if value and value != getattr(machine, field):
            raise apierrors.bad_request(f"{field} is immutable and cannot be updated")
    skip_launch = _flag(body, "skip_launch")
    cordon = _flag(body, "skip_service_registration")
    _optional_int(body, "lease_ttl")
    secrets.check_min_version(store.app(app_name), body)
    _, volumes = capacity.resolve_mounts(
        store, app=app_name, machine_id=machine.id, config=config, region=machine.region
    )
    stored = configs.normalise(config, volumes)
    capacity.check_update(
        store,
        region=machine.region,
        old_mb=configs.memory_mb(machine.config),
        new_mb=configs.memory_mb(stored),
    )
    replace_config(store, machine, stored)
    if cordon:
        machine.cordoned = True
    lifecycle.record(machine, rt, "update", "replacing")
    reboot_for_update(store, machine, skip_launch=skip_launch)
    return machine


def start(store: Store, app_name: str, machine_id: str, *, nonce: str | None) -> str:
    """POST .../start; returns the previous state."""
    machine = store.writable(app_name, machine_id)
    leases.check_write(machine, store.rt, nonce)
    if machine.state not in STOPPED_LIKE:
        raise apierrors.failed_precondition(
            f"unable to start machine from current state: '{machine.state}'"
        )
    previous = machine.state
    lifecycle.record(machine, store.rt, "start", "pending")
    lifecycle.begin(machine, store.rt, [_starting(store)])
    return previous


def stop(store: Store, app_name: str, machine_id: str, *, nonce: str | None) -> None:
    """POST .../stop (the optional StopRequest body is validated by the route)."""
    machine = store.writable(app_name, machine_id)
    leases.check_write(machine, store.rt, nonce)
    if machine.state in RUNNING:
        lifecycle.begin(machine, store.rt, [_stopping(store)])
    elif machine.state == "suspended":
        machine.state = "stopped"
        lifecycle.record(machine, store.rt, "stop", "stopped")


def suspend(store: Store, app_name: str, machine_id: str, *, nonce: str | None) -> None:
    """POST .../suspend: only a started machine can be suspended."""
    machine = store.writable(app_name, machine_id)
    leases.check_write(machine, store.rt, nonce)
    if machine.state != "started":
        raise apierrors.failed_precondition(
            f"unable to suspend machine from current state: '{machine.state}'"
        )
    step = Step("suspending", store.rt.behaviour.suspend_seconds, "suspended", "suspend")
    lifecycle.begin(machine, store.rt, [step])


def restart(store: Store, app_name: str, machine_id: str, *, nonce: str | None) -> None:
    """POST .../restart: stop then start a started machine."""
    machine = store.writable(app_name, machine_id)
    leases.check_write(machine, store.rt, nonce)
    if machine.state != "started":
        raise apierrors.failed_precondition(
            f"unable to restart machine from current state: '{machine.state}'"
        )
    lifecycle.record(machine, store.rt, "restart", "pending")
    lifecycle.begin(machine, store.rt, [_stopping(store), _starting(store)])


def destroy(
    store: Store, app_name: str, machine_id: str, *, force: bool, nonce: str | None
) -> None:
    """DELETE .../{id}: ``destroying`` then ``destroyed``; volumes and lease are released."""
    machine = store.machine(app_name, machine_id)
    if machine.state == "destroyed":
        raise apierrors.machine_not_found(machine_id)
    if machine.state == "destroying":
        return
    leases.check_write(machine, store.rt, nonce)
    if machine.state not in STOPPED_LIKE and not force:
        raise apierrors.failed_precondition(
            "unable to destroy machine, not currently stopped or suspended"
        )
    kill(store, machine)


def kill(store: Store, machine: Machine) -> None:
    """Destroy without checks (used by destroy, app deletion and seeding)."""
    step = Step("destroying", store.rt.behaviour.destroy_seconds, "destroyed", "destroy")
    lifecycle.begin(machine, store.rt, [step])
    machine.lease = None
    machine.cordoned = False
    store.detach_volumes(machine.id)


def cordon(
    store: Store, app_name: str, machine_id: str, *, cordoned: bool, nonce: str | None
) -> None:
    """POST .../cordon and .../uncordon: toggle request routing (``Machine.cordoned``)."""
    machine = store.writable(app_name, machine_id)
    leases.check_write(machine, store.rt, nonce)
    machine.cordoned = cordoned
    lifecycle.record(machine, store.rt, "cordon" if cordoned else "uncordon", "ok")


def set_metadata(
    store: Store, app_name: str, machine_id: str, key: str, body: Any, *, nonce: str | None
) -> None:
    """POST .../metadata/{key} with ``{"value": "..."}`` (204)."""
    machine = store.writable(app_name, machine_id)
    leases.check_write(machine, store.rt, nonce)
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, str) or not key:
        raise apierrors.bad_request("metadata value must be a string")
    machine.config.setdefault("metadata", {})[key] = value
    machine.updated_at = store.rt.wall()


def delete_metadata(
    store: Store, app_name: str, machine_id: str, key: str, *, nonce: str | None
) -> None:
    """DELETE .../metadata/{key} (204, also when the key is absent)."""
    machine = store.writable(app_name, machine_id)
    leases.check_write(machine, store.rt, nonce)
    machine.config.setdefault("metadata", {}).pop(key, None)
    machine.updated_at = store.rt.wall()


def patch_metadata(
    store: Store, app_name: str, machine_id: str, body: Any, *, nonce: str | None
) -> None:
    """PATCH .../metadata (SPEC-NEW): set/remove keys; stale ``machine_version`` -> 412."""
    machine = store.writable(app_name, machine_id)
    leases.check_write(machine, store.rt, nonce)
    body = _object(body)
    wanted = body.get("machine_version")
    if wanted is not None and not isinstance(wanted, str):
        raise apierrors.bad_request("machine_version must be a string")
    if wanted and wanted != machine.version:
        raise apierrors.generic(412, "machine version mismatch")
    changes = body.get("metadata")
    if not isinstance(changes, dict):
        raise apierrors.bad_request("metadata must be an object")
    metadata = machine.config.setdefault("metadata", {})
    for key, value in changes.items():
        if value is None or value == "":
            metadata.pop(key, None)
        elif isinstance(value, str):
            metadata[key] = value
        else:
            raise apierrors.bad_request("metadata values must be strings or null")
    machine.updated_at = store.rt.wall()
