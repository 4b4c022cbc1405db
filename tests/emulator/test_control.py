"""The /_emulator control API: reset, behaviour, fixtures, state dump, external writers."""

from __future__ import annotations

import httpx

from controller.emulator import EmulatorState
from controller.testing import FakeClock

IMAGE = "registry.fly.io/web:deployment-01"
NONCE = "fly-machine-lease-nonce"


async def test_seed_builds_a_drifted_fleet(client: httpx.AsyncClient) -> None:
    """POST /_emulator/seed creates apps, volumes and machines in given states and returns ids."""
    response = await client.post(
        "/_emulator/seed",
        json={
            "apps": [{"name": "db", "org_slug": "acme"}],
            "volumes": [
                {"app": "db", "name": "pgdata", "region": "ams", "id": "vol_fixed00000000001"}
            ],
            "machines": [
                {
                    "app": "db",
                    "config": {
                        "image": "postgres:16",
                        "mounts": [{"volume": "vol_fixed00000000001", "path": "/data"}],
                    },
                    "state": "stopped",
                    "metadata": {"role": "primary"},
                    "id": "0123456789abcd",
                },
                {"app": "db", "config": {"image": "postgres:15"}, "region": "ord"},
            ],
        },
    )
    assert response.status_code == 201
    seeded = response.json()
    assert seeded["apps"] == ["db"]
    assert seeded["volumes"][0]["id"] == "vol_fixed00000000001"
    first, second = seeded["machines"]
    assert (first["id"], first["state"], first["region"]) == ("0123456789abcd", "stopped", "ams")
    assert (second["state"], second["region"]) == ("started", "ord")
    got = (await client.get("/v1/apps/db/machines/0123456789abcd")).json()
    assert got["config"]["metadata"]["role"] == "primary"
    assert got["config"]["guest"]["memory_mb"] == 256
    apps = (await client.get("/v1/apps", params={"org_slug": "acme"})).json()
    assert apps == {
        "total_apps": 1,
        "apps": [{"id": "db", "name": "db", "machine_count": 2}],
    }


async def test_seeded_started_machine_already_passes_checks(
    client: httpx.AsyncClient, emulator: EmulatorState
) -> None:
    """A seeded started machine has been up long enough for its checks to pass."""
    config = {"image": IMAGE, "checks": {"http": {"type": "http", "port": 80}}}
    seeded = emulator.seed_fixtures({"machines": [{"app": "web", "config": config}]})
    machine_id = seeded["machines"][0]["id"]
    checks = (await client.get(f"/v1/apps/web/machines/{machine_id}")).json()["checks"]
    assert [c["status"] for c in checks] == ["passing"]


async def test_invalid_seed_is_422(client: httpx.AsyncClient) -> None:
    """Fixtures are validated; unknown fields get 422 with details."""
    response = await client.post("/_emulator/seed", json={"machines": [{"app": "x"}]})
    assert response.status_code == 422
    assert response.json()["details"]


async def test_behaviour_get_and_patch(client: httpx.AsyncClient, emulator: EmulatorState) -> None:
    """PATCH /_emulator/behaviour updates chosen toggles and validates them."""
    assert (await client.get("/_emulator/behaviour")).json()["boot_seconds"] == 2.0
    patched = await client.patch("/_emulator/behaviour", json={"boot_seconds": 0.5})
    assert patched.json()["boot_seconds"] == 0.5
    assert emulator.behaviour.boot_seconds == 0.5
    assert (
        await client.patch("/_emulator/behaviour", json={"boot_seconds": -1})
    ).status_code == 422
    assert (await client.patch("/_emulator/behaviour", json={"nope": 1})).status_code == 422


async def test_reset_wipes_everything_and_reseeds(
    client: httpx.AsyncClient, make_machine, emulator: EmulatorState
) -> None:
    """POST /_emulator/reset empties apps, machines, faults and the log, keeping behaviour."""
    emulator.patch_behaviour({"boot_seconds": 0.25})
    await make_machine()
    emulator.add_fault({"path": "/x", "status": 500})
    response = await client.post("/_emulator/reset", json={"seed": 9})
    assert response.json() == {"ok": True, "seed": 9}
    state = (await client.get("/_emulator/state")).json()
    assert (state["apps"], state["machines"], state["faults"]) == ([], [], [])
    assert state["request_count"] == 0
    assert state["seed"] == 9
    assert state["behaviour"]["boot_seconds"] == 0.25


async def test_state_dump_includes_lease_nonce_and_versions(
    client: httpx.AsyncClient, started_machine
) -> None:
    """GET /_emulator/state shows machines with their lease (nonce included) and versions."""
    machine = await started_machine()
    lease = (
        await client.post(f"/v1/apps/web/machines/{machine['id']}/lease", params={"ttl": 60})
    ).json()["data"]
    dumped = (await client.get("/_emulator/state")).json()
    entry = dumped["machines"][0]
    assert entry["app"] == "web"
    assert entry["lease"]["nonce"] == lease["nonce"]
    assert entry["versions"] == [machine["version"]]
    assert entry["target_state"] == "started"


async def test_external_bump_now_creates_drift(client: httpx.AsyncClient, started_machine) -> None:
    """kind=bump_version changes the config and version immediately."""
    machine = await started_machine()
    response = await client.post(
        "/_emulator/external-writers",
        json={"kind": "bump_version", "app": "web", "machine_id": machine["id"]},
    )
    assert response.status_code == 201
    assert response.json()["pending"] is False
    got = (await client.get(f"/v1/apps/web/machines/{machine['id']}")).json()
    assert got["version"] == response.json()["version"] != machine["version"]
    assert got["config"]["env"] == {"EMULATOR_EXTERNAL_BUMP": "1"}


async def test_external_bump_on_next_update_makes_current_version_stale(
    client: httpx.AsyncClient, started_machine
) -> None:
    """A bump queued for next_update lands between the client's read and write -> 409."""
    machine = await started_machine()
    await client.post(
        "/_emulator/external-writers",
        json={
            "kind": "bump_version",
            "app": "web",
            "machine_id": machine["id"],
            "on": "next_update",
            "patch": {"metadata": {"touched": "yes"}},
        },
    )
    assert len((await client.get("/_emulator/external-writers")).json()) == 1
    path = f"/v1/apps/web/machines/{machine['id']}"
    response = await client.post(
        path, json={"config": {"image": IMAGE}, "current_version": machine["version"]}
    )
    assert response.status_code == 409
    got = (await client.get(path)).json()
    assert got["config"]["metadata"]["touched"] == "yes"
    assert (await client.get("/_emulator/external-writers")).json() == []
    retry = await client.post(
        path, json={"config": {"image": IMAGE}, "current_version": got["version"]}
    )
    assert retry.status_code == 200


async def test_external_bump_on_next_lease_changes_the_leased_version(
    client: httpx.AsyncClient, started_machine, emulator: EmulatorState
) -> None:
    """A bump on next_lease means the lease's data.version differs from the earlier read."""
    machine = await started_machine()
    emulator.external_writer(
        {"kind": "bump_version", "app": "web", "machine_id": machine["id"], "on": "next_lease"}
    )
    lease = await client.post(f"/v1/apps/web/machines/{machine['id']}/lease", params={"ttl": 30})
    assert lease.status_code == 201
    assert lease.json()["data"]["version"] != machine["version"]


async def test_external_lease_holder_blocks_until_expiry(
    client: httpx.AsyncClient, started_machine, clock: FakeClock
) -> None:
    """kind=hold_lease makes someone else the holder for the given seconds."""
    machine = await started_machine()
    await client.post(
        "/_emulator/external-writers",
        json={
            "kind": "hold_lease",
            "app": "web",
            "machine_id": machine["id"],
            "seconds": 20,
            "owner": "deployer@example.com",
        },
    )
    path = f"/v1/apps/web/machines/{machine['id']}/lease"
    held = await client.post(path, params={"ttl": 30})
    assert held.status_code == 409
    assert "held by deployer@example.com" in held.json()["message"]
    clock.advance(20)
    assert (await client.post(path, params={"ttl": 30})).status_code == 201


async def test_hold_lease_on_next_lease(
    client: httpx.AsyncClient, started_machine, emulator: EmulatorState
) -> None:
    """A lease holder queued for next_lease beats the client's own acquisition."""
    machine = await started_machine()
    emulator.external_writer(
        {"kind": "hold_lease", "app": "web", "machine_id": machine["id"], "on": "next_lease"}
    )
    path = f"/v1/apps/web/machines/{machine['id']}/lease"
    assert (await client.post(path)).status_code == 409


async def test_clock_advance_endpoint(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """POST /_emulator/clock/advance moves a FakeClock forward."""
    before = clock.monotonic()
    response = await client.post("/_emulator/clock/advance", json={"seconds": 12.5})
    assert response.status_code == 200
    assert clock.monotonic() == before + 12.5
    assert (await client.post("/_emulator/clock/advance", json={"seconds": -1})).status_code == 400
