"""Per-action rate limits with the injected clock."""

from __future__ import annotations

import httpx
import pytest

from controller.emulator import Behaviour, EmulatorState
from controller.testing import FakeClock

IMAGE = "registry.fly.io/web:deployment-01"


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour()  # production defaults: rate limits on


@pytest.fixture
def machine_ids(emulator: EmulatorState) -> list[str]:
    seeded = emulator.seed_fixtures(
        {"machines": [{"app": "web", "config": {"image": IMAGE}} for _ in range(2)]}
    )
    return [m["id"] for m in seeded["machines"]]


async def test_fourth_action_in_a_second_is_429_with_retry_after(
    client: httpx.AsyncClient, machine_ids, clock: FakeClock
) -> None:
    """An action allows a burst of 3 per machine, then 429 with an integer Retry-After."""
    path = f"/v1/apps/web/machines/{machine_ids[0]}/cordon"
    statuses = [(await client.post(path)).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    limited = await client.post(path)
    assert limited.status_code == 429
    assert limited.json() == {"error": "rate limit exceeded"}
    assert limited.headers["retry-after"] == "1"
    other_machine = await client.post(f"/v1/apps/web/machines/{machine_ids[1]}/cordon")
    assert other_machine.status_code == 200
    other_action = await client.post(f"/v1/apps/web/machines/{machine_ids[0]}/uncordon")
    assert other_action.status_code == 200
    clock.advance(1)
    assert (await client.post(path)).status_code == 200


async def test_get_machine_allows_burst_of_ten(
    client: httpx.AsyncClient, machine_ids, clock: FakeClock
) -> None:
    """Get Machine has its own 5/s limit with a burst of 10."""
    path = f"/v1/apps/web/machines/{machine_ids[0]}"
    statuses = [(await client.get(path)).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    clock.advance(0.2)
    assert (await client.get(path)).status_code == 200


async def test_retry_after_can_be_omitted(
    client: httpx.AsyncClient, machine_ids, emulator: EmulatorState
) -> None:
    """With retry_after_header off, 429s carry no Retry-After."""
    emulator.patch_behaviour({"retry_after_header": False})
    path = f"/v1/apps/web/machines/{machine_ids[0]}/uncordon"
    responses = [await client.post(path) for _ in range(4)]
    assert responses[-1].status_code == 429
    assert "retry-after" not in responses[-1].headers


async def test_create_is_limited_per_app(
    client: httpx.AsyncClient, machine_ids, emulator: EmulatorState
) -> None:
    """Create is scoped to the app; turning rate limits off lifts it."""
    body = {"config": {"image": IMAGE}}
    statuses = [
        (await client.post("/v1/apps/web/machines", json=body)).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    emulator.patch_behaviour({"rate_limits": False})
    assert (await client.post("/v1/apps/web/machines", json=body)).status_code == 200
