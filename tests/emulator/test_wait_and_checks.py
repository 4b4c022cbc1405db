"""The /wait long-poll on the fake clock, and runtime health checks."""

from __future__ import annotations

import time

import httpx
import pytest

from controller.testing import FakeClock

IMAGE = "registry.fly.io/web:deployment-01"
CHECKED = {
    "image": IMAGE,
    "checks": {"alive": {"type": "tcp", "port": 8080}},
    "services": [{"internal_port": 8080, "checks": [{"type": "http", "path": "/health"}]}],
}


async def test_wait_returns_when_started_in_zero_wall_time(
    make_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """/wait blocks on the fake clock until the machine has booted, then answers 200."""
    machine = await make_machine()
    before_wall, before_clock = time.monotonic(), clock.monotonic()
    response = await client.get(
        f"/v1/apps/web/machines/{machine['id']}/wait",
        params={"state": "started", "timeout": 30, "version": machine["version"]},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert (body["state"], body["version"]) == ("started", machine["version"])
    assert body["event_id"]
    assert clock.monotonic() - before_clock == pytest.approx(2.0, abs=1e-3)
    assert time.monotonic() - before_wall < 1.0


async def test_wait_times_out_with_408(
    make_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A state that is never reached gets 408 with Fly's message after exactly the timeout."""
    machine = await make_machine(skip_launch=True)
    start = clock.monotonic()
    response = await client.get(
        f"/v1/apps/web/machines/{machine['id']}/wait", params={"state": "started", "timeout": 5}
    )
    assert response.status_code == 408
    assert response.json() == {
        "error": "machine failed to reach desired state, started, currently created"
    }
    assert clock.monotonic() - start == pytest.approx(5.0, abs=1e-6)


@pytest.mark.parametrize("seconds", ["0", "61", "90", "abc"])
async def test_wait_timeout_outside_1_to_60_is_400(
    make_machine, client: httpx.AsyncClient, seconds: str
) -> None:
    """timeout must be an integer in 1..60 seconds, else 400 invalid_argument."""
    machine = await make_machine()
    response = await client.get(
        f"/v1/apps/web/machines/{machine['id']}/wait", params={"timeout": seconds}
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("invalid_argument")


async def test_wait_for_stopped_needs_a_version(started_machine, client: httpx.AsyncClient) -> None:
    """state=stopped without version/instance_id is a 400; with instance_id it waits."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    await client.post(path + "/stop")
    assert (await client.get(path + "/wait", params={"state": "stopped"})).status_code == 400
    response = await client.get(
        path + "/wait", params={"state": "stopped", "instance_id": machine["instance_id"]}
    )
    assert response.status_code == 200
    assert response.json()["state"] == "stopped"


async def test_wait_accepts_comma_separated_states(
    started_machine, client: httpx.AsyncClient
) -> None:
    """state may be a comma list; any listed state satisfies the wait."""
    machine = await started_machine()
    response = await client.get(
        f"/v1/apps/web/machines/{machine['id']}/wait",
        params={"state": "stopped,started", "version": machine["version"]},
    )
    assert response.json()["state"] == "started"


async def test_wait_on_a_replaced_version_is_400(
    started_machine, client: httpx.AsyncClient
) -> None:
    """Waiting on a version that an update replaced fails at once with "currently replaced"."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    await client.post(path, json={"config": {"image": IMAGE}})
    response = await client.get(path + "/wait", params={"version": machine["version"]})
    assert response.status_code == 400
    assert "currently replaced" in response.json()["error"]


async def test_wait_for_destroyed(started_machine, client: httpx.AsyncClient) -> None:
    """A force-destroyed machine satisfies a wait for destroyed."""
    machine = await started_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    await client.delete(path, params={"force": "true"})
    response = await client.get(path + "/wait", params={"state": "destroyed"})
    assert response.json()["state"] == "destroyed"


async def test_checks_empty_after_start_then_passing(
    make_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """Configured checks report nothing right after start, then passing after the delay."""
    machine = await make_machine(CHECKED)
    path = f"/v1/apps/web/machines/{machine['id']}"
    clock.advance(2)
    assert (await client.get(path)).json()["checks"] == []
    clock.advance(5)
    checks = (await client.get(path)).json()["checks"]
    assert [c["name"] for c in checks] == ["alive", "servicecheck-00-http-8080"]
    assert {c["status"] for c in checks} == {"passing"}


async def test_fail_checks_env_never_passes(
    make_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """EMULATOR_FAIL_CHECKS=1 in env keeps every check critical."""
    machine = await make_machine({**CHECKED, "env": {"EMULATOR_FAIL_CHECKS": "1"}})
    clock.advance(60)
    got = (await client.get(f"/v1/apps/web/machines/{machine['id']}")).json()
    assert got["state"] == "started"
    assert {c["status"] for c in got["checks"]} == {"critical"}


async def test_crashloop_image_keeps_exiting(
    make_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """An image tagged crashloop exits repeatedly with restart_count rising, never passing."""
    machine = await make_machine({**CHECKED, "image": "registry.fly.io/web:crashloop-1"})
    clock.advance(20)
    got = (await client.get(f"/v1/apps/web/machines/{machine['id']}")).json()
    exits = [e for e in got["events"] if e["type"] == "exit"]
    assert len(exits) >= 3
    counts = [e["request"]["exit_event"]["restart_count"] for e in exits]
    assert counts == sorted(counts, reverse=True)
    assert exits[0]["request"]["exit_event"]["restarting"] is True
    assert all(c["status"] != "passing" for c in got["checks"])


async def test_crashloop_with_restart_policy_no_stops(
    make_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A crashing machine whose restart policy is "no" ends up stopped after one exit."""
    config = {"image": "web:crashloop", "restart": {"policy": "no"}}
    machine = await make_machine(config)
    clock.advance(3600 * 24)
    got = (await client.get(f"/v1/apps/web/machines/{machine['id']}")).json()
    assert got["state"] == "stopped"


async def test_crashloop_settles_quickly_after_a_long_jump(
    make_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A day of crash-looping settles in bounded work and keeps the event list capped."""
    machine = await make_machine({"image": "web:crashloop", "restart": {"policy": "always"}})
    clock.advance(86_400)
    started = time.monotonic()
    events = (await client.get(f"/v1/apps/web/machines/{machine['id']}/events")).json()
    assert time.monotonic() - started < 1.0
    assert events[0]["type"] in ("exit", "start")


async def test_checks_override_from_control_api(
    make_machine, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """POST /_emulator/checks forces a healthy-looking machine's checks to fail."""
    machine = await make_machine(CHECKED)
    body = {"app": "web", "machine_id": machine["id"], "checks": "failing"}
    assert (await client.post("/_emulator/checks", json=body)).status_code == 200
    clock.advance(30)
    got = (await client.get(f"/v1/apps/web/machines/{machine['id']}")).json()
    assert {c["status"] for c in got["checks"]} == {"critical"}
