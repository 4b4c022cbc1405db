"""Leases: acquire, refresh, release, conflicts, expiry and write protection."""

from __future__ import annotations

import httpx
import pytest

from controller.emulator import EmulatorState
from controller.testing import FakeClock

IMAGE = "registry.fly.io/web:deployment-01"
NONCE = "fly-machine-lease-nonce"
OTHER = {"Authorization": "Bearer someone-elses-token"}


async def test_acquire_with_query_ttl_returns_201_envelope(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """POST lease?ttl= answers 201 with the wrapped {status, data} envelope."""
    machine = await started_machine()
    response = await client.post(f"/v1/apps/web/machines/{machine['id']}/lease", params={"ttl": 30})
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "success"
    data = body["data"]
    assert set(data) == {"nonce", "expires_at", "owner", "description", "version"}
    assert data["expires_at"] == int(clock.now()) + 30
    assert data["owner"].endswith("@tokens.fly.io")
    assert data["version"] == machine["version"]


async def test_acquire_with_json_body(started_machine, client: httpx.AsyncClient, clock) -> None:
    """The documented JSON body form {ttl, description} works too."""
    machine = await started_machine()
    response = await client.post(
        f"/v1/apps/web/machines/{machine['id']}/lease",
        json={"ttl": 500, "description": "deploy"},
    )
    assert response.status_code == 201
    assert response.json()["data"]["description"] == "deploy"
    assert response.json()["data"]["expires_at"] == int(clock.now()) + 500


async def test_refresh_keeps_nonce_and_extends_expiry(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """POST with the current nonce refreshes: same nonce, later expiry."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}/lease"
    first = (await client.post(path, params={"ttl": 10})).json()["data"]
    clock.advance(5)
    refreshed = await client.post(path, params={"ttl": 10}, headers={NONCE: first["nonce"]})
    assert refreshed.status_code == 201
    assert refreshed.json()["data"]["nonce"] == first["nonce"]
    assert refreshed.json()["data"]["expires_at"] == first["expires_at"] + 5


async def test_held_lease_is_409_with_holder_and_go_time(
    started_machine, client: httpx.AsyncClient
) -> None:
    """A second acquirer gets 409 naming the holder and expiry in Go's time format."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}/lease"
    held = (await client.post(path, params={"ttl": 60})).json()["data"]
    response = await client.post(path, params={"ttl": 60}, headers=OTHER)
    assert response.status_code == 409
    body = response.json()
    assert body["status"] == "error"
    assert body["code"] == "invalid"
    assert body["message"] == (
        f"machine ID {machine['id']} lease currently held by {held['owner']}, "
        "expires at 2023-11-14 22:14:30 +0000 UTC"
    )
    wrong_nonce = await client.post(path, params={"ttl": 60}, headers={NONCE: "000000000000"})
    assert wrong_nonce.status_code == 409


async def test_held_lease_message_can_use_rfc3339(
    started_machine, client: httpx.AsyncClient, emulator: EmulatorState
) -> None:
    """The lease_time_format toggle switches the expiry to the newer RFC 3339 form."""
    emulator.patch_behaviour({"lease_time_format": "rfc3339"})
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}/lease"
    await client.post(path, params={"ttl": 60})
    message = (await client.post(path, headers=OTHER)).json()["message"]
    assert message.endswith("expires at 2023-11-14T22:14:30Z")


async def test_get_lease_then_expiry_gives_lease_not_found(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """GET shows the live lease (nonce included); after the TTL it is 404 "lease not found"."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}/lease"
    assert (await client.get(path)).status_code == 404
    nonce = (await client.post(path, params={"ttl": 10})).json()["data"]["nonce"]
    got = await client.get(path)
    assert got.status_code == 200
    assert got.json()["data"]["nonce"] == nonce
    clock.advance(10)
    expired = await client.get(path)
    assert expired.status_code == 404
    assert expired.json() == {"status": "error", "message": "lease not found", "code": "not_found"}
    released = await client.delete(path, headers={NONCE: nonce})
    assert released.status_code == 404
    assert "lease not found" in released.json()["message"]


async def test_release_needs_the_nonce(started_machine, client: httpx.AsyncClient) -> None:
    """DELETE with a wrong or missing nonce is "lease not found"; the right one releases."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}/lease"
    nonce = (await client.post(path, params={"ttl": 60})).json()["data"]["nonce"]
    assert (await client.delete(path)).status_code == 404
    assert (await client.delete(path, headers={NONCE: "nope"})).status_code == 404
    released = await client.delete(path, headers={NONCE: nonce})
    assert released.status_code == 200
    assert released.json() == {"status": "success", "data": {"ok": True}}
    assert (await client.get(path)).status_code == 404


async def test_expired_lease_refresh_returns_a_new_nonce(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Refreshing after expiry creates a new lease with a new nonce (flyctl checks for this)."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}/lease"
    old = (await client.post(path, params={"ttl": 5})).json()["data"]["nonce"]
    clock.advance(6)
    new = await client.post(path, params={"ttl": 5}, headers={NONCE: old})
    assert new.status_code == 201
    assert new.json()["data"]["nonce"] != old


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("POST", "", {"config": {"image": IMAGE}}),
        ("POST", "/stop", None),
        ("POST", "/suspend", None),
        ("POST", "/restart", None),
        ("POST", "/cordon", None),
        ("DELETE", "?force=true", None),
        ("POST", "/metadata/k", {"value": "v"}),
        ("DELETE", "/metadata/k", None),
    ],
)
async def test_writes_on_leased_machine_need_the_nonce(
    started_machine, client: httpx.AsyncClient, method: str, suffix: str, body
) -> None:
    """Every write without the holder's nonce gets 409 in the lease envelope."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    nonce = (await client.post(path + "/lease", params={"ttl": 60}, headers=OTHER)).json()
    response = await client.request(method, path + suffix, json=body)
    assert response.status_code == 409
    assert response.json()["status"] == "error"
    assert "lease currently held by" in response.json()["message"]
    allowed = await client.request(
        method, path + suffix, json=body, headers={NONCE: nonce["data"]["nonce"]}
    )
    assert allowed.status_code in (200, 204)


async def test_expired_lease_does_not_block_writes(
    started_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Once the TTL has passed, writes without a nonce succeed again."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    await client.post(path + "/lease", params={"ttl": 3}, headers=OTHER)
    assert (await client.post(path + "/stop")).status_code == 409
    clock.advance(3)
    assert (await client.post(path + "/stop")).status_code == 200


async def test_create_with_lease_ttl_returns_nonce_once(
    make_machine, client: httpx.AsyncClient
) -> None:
    """lease_ttl on create returns a top-level nonce that unlocks writes; GET never shows it."""
    machine = await make_machine(lease_ttl=300)
    assert len(machine["nonce"]) == 12
    path = f"/v1/apps/web/machines/{machine['id']}"
    assert "nonce" not in (await client.get(path)).json()
    lease = (await client.get(path + "/lease")).json()["data"]
    assert lease["nonce"] == machine["nonce"]
    assert (await client.post(path + "/cordon")).status_code == 409
    assert (
        await client.post(path + "/cordon", headers={NONCE: machine["nonce"]})
    ).status_code == 200


async def test_include_leases_shows_stripped_lease(
    started_machine, client: httpx.AsyncClient
) -> None:
    """include_leases adds {description, expires_at, owner} without the nonce."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    await client.post(path + "/lease", json={"ttl": 60, "description": "x"})
    listed = (await client.get("/v1/apps/web/machines", params={"include_leases": "true"})).json()
    assert set(listed[0]["lease"]) == {"description", "expires_at", "owner"}
    assert "lease" not in (await client.get("/v1/apps/web/machines")).json()[0]
    got = (await client.get(path, params={"include_leases": "true"})).json()
    assert got["lease"]["description"] == "x"
