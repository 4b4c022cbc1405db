"""The client against the emulator over real loopback HTTP: the happy paths of every endpoint,
the exact requests on the wire (from the emulator's request log), and spec conformance."""

from __future__ import annotations

import pytest
from fleet import IMAGE, machine_config

from controller.flyapi import MachinesClient
from tests.integration.conftest import Served


async def test_machine_lifecycle_sends_nonce_and_current_version(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """create(lease) -> wait -> update(current_version + nonce) -> wait(new version) -> destroy."""
    created = await api.create_machine(
        app_name, config=machine_config(), region="ams", lease_ttl=30
    )
    assert created.nonce, "create with lease_ttl returns the lease nonce"
    assert created.region == "ams"
    waited = await api.wait_machine(
        app_name, created.id, state="started", version=created.version, timeout=10
    )
    assert waited.ok

    new_config = machine_config(env={"LOG_LEVEL": "debug"})
    updated = await api.update_machine(
        app_name,
        created.id,
        config=new_config,
        current_version=created.version,
        nonce=created.nonce,
    )
    assert updated.version != created.version
    await api.wait_machine(
        app_name, created.id, state="started", version=updated.version, timeout=10
    )
    fetched = await api.get_machine(app_name, created.id)
    assert fetched.version == updated.version
    assert fetched.config["env"] == {"LOG_LEVEL": "debug"}
    assert fetched.config["guest"]["cpu_kind"] == "shared", "server-filled defaults are kept"

    await api.release_lease(app_name, created.id, nonce=created.nonce)
    await api.destroy_machine(app_name, created.id, force=True)

    update = next(
        e
        for e in served.log()
        if e["method"] == "POST" and e["path"] == f"/v1/apps/{app_name}/machines/{created.id}"
    )
    assert "fly-machine-lease-nonce" in update["headers_present"]
    assert update["body"]["current_version"] == created.version
    assert update["body"]["config"]["env"] == {"LOG_LEVEL": "debug"}
    served.assert_spec_clean()


async def test_lease_acquire_refresh_release_round_trip(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """Acquire returns a nonce; refresh keeps it and extends expiry; release frees the machine."""
    machine = await api.create_machine(app_name, config=machine_config())
    lease = await api.acquire_lease(app_name, machine.id, ttl=15, description="test")
    assert lease.nonce
    assert lease.version == machine.version, "the lease reports the version it was taken at"
    seen = await api.get_lease(app_name, machine.id)
    assert seen.nonce == lease.nonce
    refreshed = await api.refresh_lease(app_name, machine.id, nonce=lease.nonce, ttl=30)
    assert refreshed.nonce == lease.nonce
    assert refreshed.expires_at is not None
    assert lease.expires_at is not None
    assert refreshed.expires_at >= lease.expires_at
    await api.release_lease(app_name, machine.id, nonce=lease.nonce)
    assert served.state.dump()["apps"]  # still there
    log = [e for e in served.log() if e["path"].endswith("/lease")]
    assert [e["method"] for e in log] == ["POST", "GET", "POST", "DELETE"]
    assert "fly-machine-lease-nonce" not in log[0]["headers_present"]
    assert "fly-machine-lease-nonce" in log[2]["headers_present"]
    assert "fly-machine-lease-nonce" in log[3]["headers_present"]
    assert log[0]["body"] == {"ttl": 15, "description": "test"}
    served.assert_spec_clean()


async def test_list_follows_pagination_and_metadata_filters(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """list_machines walks fly-next-cursor pages; metadata filters go out as metadata.<key>."""
    ids = []
    for n in range(5):
        meta = {"reconciler/slot": f"web-ams-{n}", "reconciler/managed": "true"}
        ids.append((await api.create_machine(app_name, config=machine_config(metadata=meta))).id)
    listed = await api.list_machines(app_name, limit=2)
    assert sorted(m.id for m in listed) == sorted(ids)
    pages = [e for e in served.log() if e["method"] == "GET" and e["path"].endswith("/machines")]
    assert len(pages) == 3
    assert "cursor" not in pages[0]["query"]
    assert all("cursor" in p["query"] for p in pages[1:])

    only = await api.list_machines(app_name, metadata={"reconciler/slot": "web-ams-3"})
    assert [m.id for m in only] == [ids[3]]
    assert served.log()[-1]["query"]["metadata.reconciler/slot"] == ["web-ams-3"]
    served.assert_spec_clean()


async def test_stop_start_and_skip_launch_update(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """A stopped machine updated with skip_launch stays stopped; start brings it back."""
    machine = await api.create_machine(app_name, config=machine_config())
    await api.wait_machine(
        app_name, machine.id, state="started", version=machine.version, timeout=10
    )
    await api.stop_machine(app_name, machine.id, timeout=5)
    await api.wait_machine(
        app_name, machine.id, state="stopped", version=machine.version, timeout=10
    )
    updated = await api.update_machine(
        app_name,
        machine.id,
        config=machine_config(env={"A": "b"}),
        current_version=machine.version,
        skip_launch=True,
    )
    again = await api.get_machine(app_name, updated.id)
    assert again.state in {"stopped", "created"}
    await api.start_machine(app_name, machine.id)
    await api.wait_machine(
        app_name, machine.id, state="started", version=updated.version, timeout=10
    )
    served.assert_spec_clean()


async def test_app_get_and_create(api: MachinesClient, served: Served) -> None:
    """Apps are created with app_name + org_slug and read back by name."""
    await api.create_app("acme-api", "personal")
    app = await api.get_app("acme-api")
    assert app.name == "acme-api"
    created = next(e for e in served.log() if e["method"] == "POST" and e["path"] == "/v1/apps")
    assert created["body"] == {"app_name": "acme-api", "org_slug": "personal"}
    served.assert_spec_clean()


@pytest.mark.parametrize("image", [IMAGE, "nginx", "nginx:1.27"])
async def test_image_ref_is_resolved_but_config_image_is_kept(
    api: MachinesClient, app_name: str, image: str, served: Served
) -> None:
    """Fly keeps the requested image in config and reports the resolved one in image_ref."""
    machine = await api.create_machine(app_name, config=machine_config(image=image))
    assert machine.config["image"] == image
    assert machine.image_ref is not None
    assert machine.image_ref.digest is not None
    assert machine.image_ref.digest.startswith("sha256:")
    served.assert_spec_clean()
