"""App and volume operations (FLY_API.md 1.10, 1.11).

* ``POST /apps`` accepts ``app_name`` (SPEC-2025, docs) or ``name`` (SPEC-NEW), plus ``org_slug``;
  201 ``{"id", "name", "created_at"}``; a taken name -> 422 with Fly's legacy text and
  ``status: name_taken`` (app names are global, so any existing app counts).
* ``GET /apps?org_slug=`` (required, else 400) -> ``{"total_apps", "apps": [ListApp]}``.
* ``DELETE /apps/{app}`` -> 202; the app, its machines and its volumes disappear at once (Fly
  deletes asynchronously; the emulator does not model the delay).
* ``POST /apps/{app}/volumes`` needs ``name`` (lowercase alphanumerics/underscores, at most 30
  characters; 400 otherwise), ``size_gb`` defaults to 1, ``region`` to the default region.
  ``DELETE`` of a volume attached to a live machine -> 412 (text chosen); otherwise 200 with the
  volume in state ``destroyed``, after which it is gone (404).
"""

from __future__ import annotations

import re
from typing import Any

from controller.emulator import apierrors, configs, regions
from controller.emulator.model import App, Volume
from controller.emulator.store import Store

APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
VOLUME_NAME = re.compile(r"^[a-z0-9_]{1,30}$")
MAX_VOLUME_GB = 500
"""Fly's largest volume (``fly volumes create --size`` help: up to 500 GB)."""


def create_app(store: Store, body: Any) -> App:
    """Create an app; 422 ``name_taken`` if the (global) name exists."""
    if not isinstance(body, dict):
        raise apierrors.bad_request("request body must be a JSON object")
    name = body.get("app_name") or body.get("name")
    if not isinstance(name, str) or not APP_NAME.match(name):
        raise apierrors.generic(422, f"invalid app name: {name!r}")
    if name in store.apps:
        raise apierrors.generic(422, "Validation failed: Name has already been taken", "name_taken")
    org = body.get("org_slug") or store.rt.behaviour.default_org_slug
    return add_app(store, name, str(org))


def add_app(store: Store, name: str, org: str) -> App:
    """Insert an app without checks (creation and seeding)."""
    network = next(
        (a.network for a in store.apps.values() if a.org_slug == org),
        None,
    )
    if network is None:
        network = store.rt.ids.network_number()
    app = App(name=name, org_slug=org, network=network, created_at=store.rt.wall())
    store.apps[name] = app
    return app


def list_apps(store: Store, org_slug: str | None) -> list[App]:
    if not org_slug:
        raise apierrors.bad_request("org_slug is required")
    return [a for a in store.apps.values() if a.org_slug == org_slug]


def delete_app(store: Store, name: str) -> None:
    """Remove the app with its machines and volumes (all at once; the name becomes free)."""
    store.app(name)
    for volume_id in [v.id for v in store.volumes.values() if v.app == name]:
        del store.volumes[volume_id]
    del store.apps[name]
    for machine in store.by_app.pop(name, []):
        del store.machines[machine.id]


def create_volume(store: Store, app_name: str, body: Any) -> Volume:
    store.app(app_name)
    if not isinstance(body, dict):
        raise apierrors.bad_request("request body must be a JSON object")
    name = body.get("name")
    if not isinstance(name, str) or not VOLUME_NAME.match(name):
        raise apierrors.bad_request(
            "volume name must be lowercase letters, digits and underscores, at most 30 characters"
        )
    size = body.get("size_gb", 1)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_VOLUME_GB:
        raise apierrors.bad_request(f"size_gb must be between 1 and {MAX_VOLUME_GB}")
    region = body.get("region") or store.rt.behaviour.default_region
    regions.check_region(str(region))
    if body.get("compute") is not None:
        configs.validate_guest(body["compute"], "compute")
    return add_volume(store, app_name, name=name, region=str(region), size_gb=size)


def add_volume(
    store: Store,
    app_name: str,
    *,
    name: str,
    region: str,
    size_gb: int,
    volume_id: str | None = None,
) -> Volume:
    """Insert a volume without checks (creation and seeding)."""
    volume = Volume(
        id=volume_id or store.rt.ids.volume_id(),
        app=app_name,
        name=name,
        region=region,
        size_gb=size_gb,
        zone=store.rt.ids.zone(),
        created_at=store.rt.wall(),
    )
    store.volumes[volume.id] = volume
    return volume


def delete_volume(store: Store, app_name: str, volume_id: str) -> Volume:
    volume = store.volume(app_name, volume_id)
    holder = volume.attached_machine_id
    if holder is not None:
        machine = store.machine(app_name, holder)
        if not machine.destroyed:
            raise apierrors.failed_precondition(
                f"volume {volume_id} is attached to machine {holder}"
            )
    del store.volumes[volume_id]
    volume.state = "destroyed"
    return volume
