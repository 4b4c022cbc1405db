"""Create, update, lifecycle actions and metadata of machines."""

from __future__ import annotations

import httpx
import pytest

from controller.testing import FakeClock

IMAGE = "registry.fly.io/web:deployment-01"


async def test_create_fills_server_defaults(make_machine) -> None:
    """Create stores guest/restart/init/fly_ metadata defaults and resolves image_ref."""
    machine = await make_machine({"image": "nginx:1.25", "guest": {"cpus": 2}, "services": []})
    config = machine["config"]
    assert config["guest"] == {"cpu_kind": "shared", "cpus": 2, "memory_mb": 256}
    assert config["restart"] == {"policy": "on-failure"}
    assert config["init"] == {}
    assert config["metadata"] == {"fly_platform_version": "v2", "fly_process_group": "app"}
    assert config["image"] == "nginx:1.25"
    assert config["services"] == []
    assert "env" not in config
    assert machine["image_ref"]["registry"] == "docker-hub-mirror.fly.io"
    assert machine["image_ref"]["repository"] == "library/nginx"
    assert machine["image_ref"]["tag"] == "1.25"
    assert machine["state"] == "starting"
    assert machine["region"] == "iad"
    assert "nonce" not in machine


async def test_create_keeps_client_values_and_empty_env(make_machine) -> None:
    """Client-sent metadata and restart policy win over defaults; env {} stays {}."""
    machine = await make_machine(
        {
            "image": IMAGE,
            "env": {},
            "restart": {"policy": "always"},
            "metadata": {"fly_process_group": "worker", "owner": "me"},
        },
        region="ord",
        name="worker-1",
    )
    config = machine["config"]
    assert config["env"] == {}
    assert config["restart"] == {"policy": "always"}
    assert config["metadata"]["fly_process_group"] == "worker"
    assert config["metadata"]["owner"] == "me"
    assert machine["image_ref"]["registry"] == "registry.fly.io"
    assert machine["image_ref"]["repository"] == "web"
    assert (machine["region"], machine["name"]) == ("ord", "worker-1")


async def test_create_without_image_is_422(client: httpx.AsyncClient, web: str) -> None:
    """A config without an image is rejected with 422 and the generic envelope."""
    response = await client.post(f"/v1/apps/{web}/machines", json={"config": {"env": {}}})
    assert response.status_code == 422
    assert "image" in response.json()["error"]


async def test_skip_launch_stays_created(make_machine, client: httpx.AsyncClient, clock) -> None:
    """skip_launch creates the machine without booting it."""
    machine = await make_machine(skip_launch=True)
    clock.advance(60)
    got = (await client.get(f"/v1/apps/web/machines/{machine['id']}")).json()
    assert got["state"] == "created"


async def test_boot_takes_boot_seconds(make_machine, client: httpx.AsyncClient, clock) -> None:
    """A new machine is starting until boot_seconds of clock time have passed."""
    machine = await make_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    clock.advance(1.9)
    assert (await client.get(path)).json()["state"] == "starting"
    clock.advance(0.1)
    got = (await client.get(path)).json()
    assert got["state"] == "started"
    assert [e["type"] for e in got["events"]] == ["start", "launch"]
    assert got["events"][0]["source"] == "flyd"
    assert got["events"][0]["timestamp"] - got["events"][1]["timestamp"] == 2000


async def test_update_replaces_fully_and_bumps_version(
    started_machine, client: httpx.AsyncClient
) -> None:
    """Update is a full replacement: omitted fields vanish, defaults return, version changes."""
    machine = await started_machine(
        {"image": IMAGE, "env": {"A": "1", "B": "2"}, "guest": {"memory_mb": 512}}
    )
    path = f"/v1/apps/web/machines/{machine['id']}"
    response = await client.post(path, json={"config": {"image": IMAGE, "env": {"A": "1"}}})
    assert response.status_code == 200
    updated = response.json()
    assert updated["config"]["env"] == {"A": "1"}
    assert updated["config"]["guest"]["memory_mb"] == 256
    assert updated["config"]["metadata"]["fly_platform_version"] == "v2"
    assert updated["version"] != machine["version"]
    assert updated["instance_id"] == updated["version"]
    versions = (await client.get(path + "/versions")).json()
    assert [v["version"] for v in versions] == [updated["version"], machine["version"]]
    assert versions[1]["user_config"]["env"] == {"A": "1", "B": "2"}
    old = (await client.get(path, params={"version": machine["version"]})).json()
    assert old["state"] == "replaced"
    assert old["config"]["env"] == {"A": "1", "B": "2"}


async def test_update_with_stale_current_version_is_409(
    started_machine, client: httpx.AsyncClient
) -> None:
    """A stale current_version gets 409 with an error text (no status code) and changes nothing."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    first = await client.post(
        path, json={"config": {"image": IMAGE}, "current_version": machine["version"]}
    )
    assert first.status_code == 200
    stale = await client.post(
        path, json={"config": {"image": "nginx"}, "current_version": machine["version"]}
    )
    assert stale.status_code == 409
    assert set(stale.json()) == {"error"}
    assert "version mismatch" in stale.json()["error"]
    current = (await client.get(path)).json()
    assert current["version"] == first.json()["version"]
    assert current["config"]["image"] == IMAGE


async def test_region_and_name_are_immutable(started_machine, client: httpx.AsyncClient) -> None:
    """Changing region or name on update is a 400."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    for change in ({"region": "ams"}, {"name": "other"}):
        response = await client.post(path, json={"config": {"image": IMAGE}, **change})
        assert response.status_code == 400
    same = {"region": machine["region"], "name": machine["name"]}
    assert (await client.post(path, json={"config": {"image": IMAGE}, **same})).status_code == 200


async def test_update_of_running_machine_restarts_it(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A running machine goes stopping -> starting -> started after an update."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    updated = (await client.post(path, json={"config": {"image": IMAGE}})).json()
    assert updated["state"] == "stopping"
    clock.advance(1.0)
    assert (await client.get(path)).json()["state"] == "starting"
    clock.advance(2.0)
    assert (await client.get(path)).json()["state"] == "started"


async def test_update_with_skip_launch_keeps_stopped_machine_stopped(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """skip_launch on update leaves a stopped machine stopped; without it the machine boots."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    assert (await client.post(path + "/stop")).status_code == 200
    clock.advance(5)
    await client.post(path, json={"config": {"image": IMAGE}, "skip_launch": True})
    clock.advance(30)
    assert (await client.get(path)).json()["state"] == "stopped"
    await client.post(path, json={"config": {"image": IMAGE}})
    clock.advance(30)
    assert (await client.get(path)).json()["state"] == "started"


async def test_start_stop_suspend_restart(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Lifecycle actions move through their transient states; invalid ones get 412."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    assert (await client.post(path + "/start")).status_code == 412
    assert (await client.post(path + "/suspend")).json() == {"ok": True}
    assert (await client.get(path)).json()["state"] == "suspending"
    clock.advance(2)
    assert (await client.get(path)).json()["state"] == "suspended"
    started = await client.post(path + "/start")
    assert started.json() == {"previous_state": "suspended"}
    clock.advance(2)
    assert (await client.post(path + "/restart")).json() == {"ok": True}
    assert (await client.get(path)).json()["state"] == "stopping"
    clock.advance(3)
    assert (await client.get(path)).json()["state"] == "started"
    assert (await client.post(path + "/stop", json={"signal": "SIGINT", "timeout": "5s"})).json()
    clock.advance(1)
    assert (await client.get(path)).json()["state"] == "stopped"
    assert (await client.post(path + "/stop")).status_code == 200
    assert (await client.post(path + "/restart")).status_code == 412


async def test_malformed_stop_body_is_400(started_machine, client: httpx.AsyncClient) -> None:
    """A stop body Go cannot decode gets 400 with Go's unmarshal message (docs issue #2187)."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}/stop"
    response = await client.post(path, content=b"[1]")
    assert response.status_code == 400
    assert response.json() == {
        "error": "json: cannot unmarshal array into Go value of type main.stopRequest"
    }
    assert (await client.post(path, content=b"{oops")).status_code == 400


async def test_destroy_requires_stop_or_force(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Destroying a started machine needs force; destroyed machines are listed only on request."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    refused = await client.delete(path)
    assert refused.status_code == 412
    assert "not currently stopped" in refused.json()["error"]
    assert (await client.delete(path, params={"force": "true"})).json() == {"ok": True}
    assert (await client.get(path)).json()["state"] == "destroying"
    clock.advance(1)
    assert (await client.get(path)).json()["state"] == "destroyed"
    assert (await client.get("/v1/apps/web/machines")).json() == []
    listed = (await client.get("/v1/apps/web/machines", params={"include_deleted": "true"})).json()
    assert [m["id"] for m in listed] == [machine["id"]]
    assert (await client.post(path + "/start")).status_code == 404
    assert (await client.delete(path)).status_code == 404


async def test_stopped_machine_destroys_without_force(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A stopped machine can be destroyed without force."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    await client.post(path + "/stop")
    clock.advance(2)
    assert (await client.delete(path)).status_code == 200


async def test_cordon_and_skip_service_registration(
    make_machine, client: httpx.AsyncClient
) -> None:
    """skip_service_registration creates a cordoned machine; uncordon/cordon toggle it."""
    machine = await make_machine(skip_service_registration=True)
    assert machine["cordoned"] is True
    path = f"/v1/apps/web/machines/{machine['id']}"
    assert (await client.post(path + "/uncordon")).json() == {"ok": True}
    assert (await client.get(path)).json()["cordoned"] is False
    await client.post(path + "/cordon")
    assert (await client.get(path)).json()["cordoned"] is True


async def test_metadata_endpoints_edit_config_metadata_in_place(
    started_machine, client: httpx.AsyncClient
) -> None:
    """Metadata set/delete answer 204, show up in config.metadata and keep the version."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    assert (await client.post(path + "/metadata/role", json={"value": "db"})).status_code == 204
    metadata = (await client.get(path + "/metadata")).json()
    assert metadata["role"] == "db"
    assert metadata["fly_platform_version"] == "v2"
    assert (await client.get(path + "/metadata/role")).json() == {"value": "db"}
    got = (await client.get(path)).json()
    assert got["config"]["metadata"]["role"] == "db"
    assert got["version"] == machine["version"]
    assert (await client.delete(path + "/metadata/role")).status_code == 204
    assert "role" not in (await client.get(path + "/metadata")).json()
    assert (await client.post(path + "/metadata/role", json={"v": 1})).status_code == 400


async def test_patch_metadata_with_stale_machine_version_is_412(
    started_machine, client: httpx.AsyncClient
) -> None:
    """PATCH metadata applies sets/removals, and a stale machine_version gets 412."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}/metadata"
    ok = await client.patch(
        path,
        json={
            "metadata": {"a": "1", "fly_process_group": None},
            "machine_version": machine["version"],
        },
    )
    assert ok.status_code == 204
    assert (await client.get(path)).json() == {"a": "1", "fly_platform_version": "v2"}
    stale = await client.patch(path, json={"metadata": {"a": "2"}, "machine_version": "01OLD"})
    assert stale.status_code == 412


async def test_events_endpoint_newest_first_with_limit(
    started_machine, client: httpx.AsyncClient
) -> None:
    """/events lists events newest first with ms timestamps and honours limit."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}/events"
    events = (await client.get(path)).json()
    assert [e["status"] for e in events] == ["started", "created"]
    assert {"id", "type", "status", "source", "timestamp"} <= set(events[0])
    assert len((await client.get(path, params={"limit": 1})).json()) == 1
    assert (await client.get(path, params={"limit": 0})).status_code == 400


@pytest.mark.parametrize("state", ["stopping", "starting"])
async def test_start_refused_while_transitioning(
    make_machine, client: httpx.AsyncClient, clock: FakeClock, state: str
) -> None:
    """Start is refused with 412 while the machine is mid-transition."""
    machine = await make_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    if state == "stopping":
        clock.advance(5)
        await client.post(path + "/stop")
    response = await client.post(path + "/start")
    assert response.status_code == 412
    assert f"'{state}'" in response.json()["error"]
