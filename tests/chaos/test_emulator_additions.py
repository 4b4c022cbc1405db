"""Emulator additions for the chaos suite: the request log's ``audit`` field, and outside lease
holders that only take a free lease (``if_free``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from controller.emulator import Behaviour, EmulatorState, EmulatorTransport, build_app
from controller.emulator.ids import token_identity
from controller.testing import FakeClock

TOKEN = "audit-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NONCE = "fly-machine-lease-nonce"
MANAGED = {"reconciler/managed": "true"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(clock: FakeClock) -> Starlette:
    return build_app(clock=clock, behaviour=Behaviour(rate_limits=False))


@pytest.fixture
def emulator(app: Starlette) -> EmulatorState:
    state: EmulatorState = app.state.emulator
    return state


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = EmulatorTransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://e", headers=AUTH) as http:
        yield http


def seeded(emulator: EmulatorState, *, managed: bool) -> str:
    metadata = MANAGED if managed else {}
    ids = emulator.seed_fixtures(
        {
            "apps": [{"name": "web"}],
            "machines": [
                {"app": "web", "config": {"image": "registry.fly.io/web:v1", "metadata": metadata}}
            ],
        }
    )
    machine_id: str = ids["machines"][0]["id"]
    return machine_id


def last(emulator: EmulatorState) -> dict[str, Any]:
    audit: dict[str, Any] = emulator.requests()[-1]["audit"]
    return audit


async def test_audit_says_whether_nonce_and_version_matched(
    client: httpx.AsyncClient, emulator: EmulatorState, clock: FakeClock
) -> None:
    machine_id = seeded(emulator, managed=True)
    path = f"/v1/apps/web/machines/{machine_id}"
    first = emulator.machine("web", machine_id)["instance_id"]

    # No lease yet: an update without current_version lands (the API does not insist).
    await client.post(
        path, json={"config": {"image": "registry.fly.io/web:v2", "metadata": MANAGED}}
    )
    assert last(emulator) == {
        "machine_version": first,
        "managed": True,
        "lease": "none",
        "lease_owner": None,
        "version": "absent",
    }
    second = emulator.machine("web", machine_id)["instance_id"]

    lease = await client.post(f"{path}/lease", params={"ttl": 30})
    nonce = lease.json()["data"]["nonce"]
    assert last(emulator)["lease"] == "none"
    config = {"image": "registry.fly.io/web:v3", "metadata": MANAGED}
    body = {"config": config, "current_version": first}
    stale = await client.post(path, json=body, headers={NONCE: nonce})
    assert stale.status_code == 409
    assert last(emulator) | {"machine_version": None} == {
        "machine_version": None,
        "managed": True,
        "lease": "match",
        "lease_owner": token_identity(TOKEN),
        "version": "stale",
    }
    body["current_version"] = second
    assert (await client.post(path, json=body, headers={NONCE: nonce})).status_code == 200
    assert (last(emulator)["lease"], last(emulator)["version"]) == ("match", "match")
    await client.post(path, json=body | {"current_version": "01NOSUCHVERSION"})
    assert (last(emulator)["lease"], last(emulator)["version"]) == ("missing", "unknown")
    await client.delete(f"{path}/lease", headers={NONCE: "not-the-nonce"})
    assert (last(emulator)["lease"], last(emulator)["version"]) == ("mismatch", None)
    assert nonce not in str(emulator.requests()), "nonces are never logged"

    clock.advance(31)
    await client.get(path)
    assert last(emulator)["lease"] == "none", "an expired lease is no lease"


async def test_audit_marks_unmanaged_machines_and_other_requests(
    client: httpx.AsyncClient, emulator: EmulatorState
) -> None:
    machine_id = seeded(emulator, managed=False)
    await client.get(f"/v1/apps/web/machines/{machine_id}/lease")
    assert last(emulator)["managed"] is False
    await client.get("/v1/apps/web/machines")
    assert emulator.requests()[-1]["audit"] is None
    emulator.add_fault({"path": "/machines/", "status": 503})
    await client.get(f"/v1/apps/web/machines/{machine_id}")
    assert emulator.requests()[-1]["audit"] is None, "answered by the fault, never handled"


async def test_an_if_free_holder_never_replaces_a_live_lease(
    client: httpx.AsyncClient, emulator: EmulatorState, clock: FakeClock
) -> None:
    machine_id = seeded(emulator, managed=True)
    path = f"/v1/apps/web/machines/{machine_id}/lease"
    ours = (await client.post(path, params={"ttl": 10})).json()["data"]
    hold = {"kind": "hold_lease", "app": "web", "machine_id": machine_id, "if_free": True}
    assert emulator.external_writer(hold) == {
        "pending": False,
        "kind": "hold_lease",
        "skipped": True,
    }
    assert emulator.machine("web", machine_id)["lease"]["owner"] == ours["owner"]
    clock.advance(11)
    taken = emulator.external_writer(hold | {"seconds": 5})
    assert taken["owner"] == "someone-else@fly.io"
    refused = await client.post(path, params={"ttl": 10}, headers={NONCE: ours["nonce"]})
    assert refused.status_code == 409
    # Without if_free the holder replaces whatever is there (the older, blunter writer).
    replaced = emulator.external_writer(
        {"kind": "hold_lease", "app": "web", "machine_id": machine_id, "owner": "flyctl@x"}
    )
    assert replaced["owner"] == "flyctl@x"
