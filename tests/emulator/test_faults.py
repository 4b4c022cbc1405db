"""Fault injection: scripted and probabilistic rules, latency, drops and silent successes."""

from __future__ import annotations

import time

import httpx
import pytest

from controller.emulator import Behaviour, EmulatorState, EmulatorTransport, build_app
from controller.testing import FakeClock

IMAGE = "registry.fly.io/web:deployment-01"
CREATE = {"config": {"image": IMAGE}}


async def test_scripted_fault_hits_the_next_n_matching_requests(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState
) -> None:
    """A scripted rule answers the next N matching requests, then stops."""
    rule = emulator.add_fault(
        {
            "method": "POST",
            "path": r"/machines$",
            "count": 2,
            "status": 503,
            "body": {"error": "flyd unavailable"},
            "headers": {"x-test": "1"},
        }
    )
    listed = await client.get("/v1/apps/web/machines")
    assert listed.status_code == 200
    first = await client.post("/v1/apps/web/machines", json=CREATE)
    second = await client.post("/v1/apps/web/machines", json=CREATE)
    third = await client.post("/v1/apps/web/machines", json=CREATE)
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.json() == {"error": "flyd unavailable"}
    assert first.headers["x-test"] == "1"
    assert rule.fired == 2
    assert len((await client.get("/v1/apps/web/machines")).json()) == 1
    log = (await client.get("/_emulator/requests")).json()
    assert [e["fault"] for e in log] == [None, rule.id, rule.id, None, None]


async def _probabilistic_statuses(seed: int) -> list[int]:
    app = build_app(clock=FakeClock(), seed=seed, behaviour=Behaviour(rate_limits=False))
    app.state.emulator.seed_fixtures({"apps": [{"name": "web"}]})
    app.state.emulator.add_fault({"path": "/machines", "probability": 0.3, "status": 500})
    async with httpx.AsyncClient(
        transport=EmulatorTransport(app),
        base_url="http://emulator",
        headers={"Authorization": "Bearer t"},
    ) as client:
        return [(await client.get("/v1/apps/web/machines")).status_code for _ in range(40)]


async def test_probabilistic_faults_are_deterministic_under_a_seed() -> None:
    """A probability rule fires on a seeded schedule: same seed, same failures."""
    first = await _probabilistic_statuses(11)
    assert first == await _probabilistic_statuses(11)
    assert 0 < first.count(500) < 40
    assert first != await _probabilistic_statuses(12)


async def test_latency_uses_the_emulator_clock(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState, clock: FakeClock
) -> None:
    """Injected latency advances the fake clock, not the wall clock."""
    emulator.add_fault({"path": ".*", "latency": 30})
    wall = time.monotonic()
    before = clock.monotonic()
    assert (await client.get("/v1/apps/web/machines")).status_code == 200
    assert clock.monotonic() - before == pytest.approx(30)
    assert time.monotonic() - wall < 1


async def test_drop_before_raises_and_commits_nothing(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState
) -> None:
    """drop=before raises RemoteProtocolError in-process and the machine is not created."""
    emulator.add_fault({"method": "POST", "path": "/machines$", "drop": "before"})
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/apps/web/machines", json=CREATE)
    assert emulator.machines("web") == []
    assert emulator.requests()[-1]["dropped"] == "before"


async def test_drop_after_commits_the_create(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState
) -> None:
    """drop=after raises RemoteProtocolError but the machine exists (silent success)."""
    emulator.add_fault({"method": "POST", "path": "/machines$", "drop": "after"})
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/v1/apps/web/machines", json=CREATE)
    assert len(emulator.machines("web")) == 1
    entry = emulator.requests()[-1]
    assert (entry["dropped"], entry["status"]) == ("after", None)


async def test_commit_fault_answers_error_after_doing_the_work(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState
) -> None:
    """commit=true runs the create for real and still answers the injected 408."""
    emulator.add_fault({"method": "POST", "path": "/machines$", "status": 408, "commit": True})
    response = await client.post("/v1/apps/web/machines", json=CREATE)
    assert response.status_code == 408
    assert len(emulator.machines("web")) == 1


async def test_fault_control_api_crud(client: httpx.AsyncClient) -> None:
    """Faults can be added, listed, removed and cleared; invalid rules get 422."""
    added = await client.post("/_emulator/faults", json={"path": "/lease", "status": 500})
    assert added.status_code == 201
    rule = added.json()
    assert (rule["count"], rule["remaining"], rule["fired"]) == (1, 1, 0)
    await client.post(
        "/_emulator/faults", json={"path": "/wait", "probability": 0.5, "status": 503}
    )
    assert len((await client.get("/_emulator/faults")).json()) == 2
    assert (await client.delete(f"/_emulator/faults/{rule['id']}")).status_code == 200
    assert (await client.delete("/_emulator/faults/nope")).status_code == 404
    assert (await client.delete("/_emulator/faults")).status_code == 200
    assert (await client.get("/_emulator/faults")).json() == []
    for bad in ({"path": "("}, {"path": "x"}, {"status": 700}, {"drop": "sideways"}):
        assert (await client.post("/_emulator/faults", json=bad)).status_code == 422


async def test_faults_apply_before_auth(app, emulator: EmulatorState) -> None:
    """An injected fault answers even a request that would have failed auth."""
    emulator.add_fault({"path": "/v1/apps", "status": 502})
    async with httpx.AsyncClient(
        transport=EmulatorTransport(app), base_url="http://emulator"
    ) as client:
        assert (await client.get("/v1/apps")).status_code == 502
        assert (await client.get("/v1/apps")).status_code == 401
