"""Listing machines: filters, summary and cursor pagination."""

from __future__ import annotations

import httpx
import pytest

from controller.emulator import EmulatorState
from controller.testing import FakeClock

IMAGE = "registry.fly.io/web:deployment-01"


@pytest.fixture
def fleet(emulator: EmulatorState) -> list[str]:
    """Five seeded machines with mixed regions, states and metadata."""
    spec = [
        ("iad", "started", {"role": "web", "tier": "a"}),
        ("iad", "stopped", {"role": "web", "tier": "b"}),
        ("ord", "started", {"role": "worker", "tier": "a"}),
        ("ord", "suspended", {"role": "web", "tier": "a"}),
        ("iad", "destroyed", {"role": "web", "tier": "a"}),
    ]
    seeded = emulator.seed_fixtures(
        {
            "machines": [
                {"app": "web", "config": {"image": IMAGE}, "region": r, "state": s, "metadata": m}
                for r, s, m in spec
            ]
        }
    )
    return [m["id"] for m in seeded["machines"]]


async def ids(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get("/v1/apps/web/machines", params=params)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()]


async def test_metadata_filters_must_all_match(client: httpx.AsyncClient, fleet) -> None:
    """metadata.<key>=<value> filters are exact and combine with AND."""
    assert await ids(client, **{"metadata.role": "web"}) == [fleet[0], fleet[1], fleet[3]]
    assert await ids(client, **{"metadata.role": "web", "metadata.tier": "a"}) == [
        fleet[0],
        fleet[3],
    ]
    assert await ids(client, **{"metadata.role": "nobody"}) == []
    assert await ids(client, **{"metadata.fly_process_group": "app"}) == fleet[:4]


async def test_region_state_and_include_deleted_filters(client: httpx.AsyncClient, fleet) -> None:
    """region, comma-separated state and include_deleted filter the list."""
    assert await ids(client, region="ord") == [fleet[2], fleet[3]]
    assert await ids(client, state="stopped,suspended") == [fleet[1], fleet[3]]
    assert await ids(client, include_deleted="true") == fleet
    assert await ids(client) == fleet[:4]


async def test_summary_omits_config_checks_and_events(client: httpx.AsyncClient, fleet) -> None:
    """summary=true drops config, checks, events and host_status."""
    machine = (await client.get("/v1/apps/web/machines", params={"summary": "true"})).json()[0]
    assert not {"config", "checks", "events", "host_status", "nonce"} & set(machine)
    assert {"id", "state", "region", "version", "instance_id"} <= set(machine)


async def test_pagination_follows_fly_next_cursor(client: httpx.AsyncClient, fleet) -> None:
    """limit pages the list; fly-next-cursor links pages and is absent on the last one."""
    seen: list[str] = []
    cursor = None
    pages = 0
    for _ in range(10):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/apps/web/machines", params=params)
        seen += [m["id"] for m in response.json()]
        pages += 1
        cursor = response.headers.get("fly-next-cursor")
        if cursor is None:
            break
    assert seen == fleet[:4]
    assert pages == 2
    exact = await client.get("/v1/apps/web/machines", params={"limit": "4"})
    assert "fly-next-cursor" not in exact.headers


@pytest.mark.parametrize("limit", ["0", "1001", "ten"])
async def test_limit_outside_1_to_1000_is_400(client: httpx.AsyncClient, fleet, limit) -> None:
    """limit must be an integer in 1..1000."""
    response = await client.get("/v1/apps/web/machines", params={"limit": limit})
    assert response.status_code == 400


async def test_cursor_expires_30_minutes_after_first_page(
    client: httpx.AsyncClient, fleet, clock: FakeClock
) -> None:
    """A cursor is valid until 30 min after the first page; then, and for garbage, 400."""
    first = await client.get("/v1/apps/web/machines", params={"limit": "1"})
    cursor = first.headers["fly-next-cursor"]
    clock.advance(29 * 60)
    second = await client.get("/v1/apps/web/machines", params={"limit": "1", "cursor": cursor})
    assert second.status_code == 200
    later_cursor = second.headers["fly-next-cursor"]
    clock.advance(60)
    expired = await client.get(
        "/v1/apps/web/machines", params={"limit": "1", "cursor": later_cursor}
    )
    assert expired.status_code == 400
    assert "expired" in expired.json()["error"]
    garbage = await client.get("/v1/apps/web/machines", params={"limit": "1", "cursor": "zzz"})
    assert garbage.status_code == 400
