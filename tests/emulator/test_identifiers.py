"""Identifier formats, determinism and the fly-request-id header."""

from __future__ import annotations

import random
import re

import httpx

from controller.emulator import Behaviour, EmulatorTransport, build_app
from controller.emulator.ids import CROCKFORD, IdGenerator
from controller.testing import FakeClock

ULID = re.compile(f"^[0-7][{CROCKFORD}]{{25}}$")


async def test_machine_id_version_and_instance_id_formats(make_machine) -> None:
    """Machine ids are 14 lowercase hex chars; version is a 26-char ULID equal to instance_id."""
    machine = await make_machine()
    assert re.fullmatch(r"[0-9a-f]{14}", machine["id"])
    assert ULID.match(machine["version"])
    assert machine["instance_id"] == machine["version"]
    assert re.fullmatch(
        r"fdaa:0:[0-9a-f]+:a7b:[0-9a-f]+:[0-9a-f]+:[0-9a-f]+:2", machine["private_ip"]
    )
    assert machine["image_ref"]["digest"].startswith("sha256:")
    assert machine["host_status"] == "ok"
    assert machine["created_at"].endswith("Z")


def test_ulids_are_time_ordered_even_on_a_frozen_clock() -> None:
    """ULIDs sort in generation order, both across clock ticks and within one millisecond."""
    clock = FakeClock()
    ids = IdGenerator(random.Random(1), clock)
    generated = [ids.ulid() for _ in range(5)]
    clock.advance(0.5)
    generated += [ids.ulid() for _ in range(5)]
    assert generated == sorted(generated)
    assert len(set(generated)) == 10


def test_volume_id_and_nonce_formats() -> None:
    """Volume ids are vol_ + 16 lowercase alphanumerics; nonces are 12 hex chars."""
    ids = IdGenerator(random.Random(3), FakeClock())
    assert re.fullmatch(r"vol_[a-z0-9]{16}", ids.volume_id())
    assert re.fullmatch(r"[0-9a-f]{12}", ids.nonce())


async def _run(seed: int) -> list[str]:
    app = build_app(clock=FakeClock(), seed=seed, behaviour=Behaviour(rate_limits=False))
    app.state.emulator.seed_fixtures({"apps": [{"name": "web"}]})
    out = []
    async with httpx.AsyncClient(
        transport=EmulatorTransport(app),
        base_url="http://emulator",
        headers={"Authorization": "Bearer t"},
    ) as client:
        for _ in range(3):
            r = await client.post("/v1/apps/web/machines", json={"config": {"image": "nginx"}})
            body = r.json()
            out += [body["id"], body["version"], body["name"], r.headers["fly-request-id"]]
    return out


async def test_same_seed_gives_identical_ids() -> None:
    """Two emulators with the same seed and a FakeClock hand out identical ids; seeds differ."""
    assert await _run(5) == await _run(5)
    assert await _run(5) != await _run(6)


async def test_every_response_has_a_request_id(client: httpx.AsyncClient) -> None:
    """fly-request-id (ULID-region) is on API, error, unknown-path and control responses."""
    responses = [
        await client.get("/v1/apps/nope"),
        await client.get("/v1/nothing-here"),
        await client.get("/_emulator/behaviour"),
        await client.get("/v1/apps", headers={"Authorization": ""}),
    ]
    request_ids = [r.headers["fly-request-id"] for r in responses]
    assert all(re.fullmatch(f"[{CROCKFORD}]{{26}}-iad", rid) for rid in request_ids)
    assert len(set(request_ids)) == len(request_ids)


async def test_unknown_app_and_machine_are_404_with_error(client: httpx.AsyncClient, web) -> None:
    """Unknown apps, machines and paths answer 404 in the generic error envelope."""
    for path in ("/v1/apps/nope/machines", "/v1/apps/web/machines/0123456789abcd", "/v1/x"):
        response = await client.get(path)
        assert response.status_code == 404
        assert set(response.json()) == {"error"}
