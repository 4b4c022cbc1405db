"""Region capacity, org quotas and volume placement errors."""

from __future__ import annotations

from typing import Any

import httpx

from controller.emulator import EmulatorState

IMAGE = "registry.fly.io/web:deployment-01"


def config(memory_mb: int = 256, **extra: Any) -> dict[str, Any]:
    return {"image": IMAGE, "guest": {"memory_mb": memory_mb}, **extra}


async def test_create_over_region_budget_is_422_insufficient_capacity(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState
) -> None:
    """A create that does not fit the region's memory budget gets 422 insufficient_capacity."""
    emulator.patch_behaviour({"region_capacity_mb": {"iad": 1024}})
    assert (await client.post("/v1/apps/web/machines", json={"config": config(768)})).is_success
    response = await client.post("/v1/apps/web/machines", json={"config": config(512)})
    assert response.status_code == 422
    assert response.json() == {
        "error": "insufficient resources available to fulfill request: could not reserve "
        "resource for machine: insufficient memory available to fulfill request",
        "status": "insufficient_capacity",
    }
    other_region = await client.post(
        "/v1/apps/web/machines", json={"config": config(512), "region": "ord"}
    )
    assert other_region.status_code == 200


async def test_update_growing_memory_over_budget_is_409(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState
) -> None:
    """Growing a machine beyond the region's budget is a 409 "aborted"; shrinking is fine."""
    emulator.patch_behaviour({"region_capacity_mb": {"iad": 1024}})
    machine = (await client.post("/v1/apps/web/machines", json={"config": config(512)})).json()
    path = f"/v1/apps/web/machines/{machine['id']}"
    grown = await client.post(path, json={"config": config(2048)})
    assert grown.status_code == 409
    assert grown.json() == {
        "error": "aborted: could not reserve resource for machine: insufficient memory "
        "available to fulfill request"
    }
    assert (await client.post(path, json={"config": config(1024)})).status_code == 200
    assert (await client.post(path, json={"config": config(256)})).status_code == 200


async def test_destroyed_machines_free_capacity(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState, clock
) -> None:
    """A machine's memory returns to the region budget once it is destroyed, not before."""
    emulator.patch_behaviour({"region_capacity_mb": {"iad": 512}})
    machine = (await client.post("/v1/apps/web/machines", json={"config": config(512)})).json()
    await client.delete(f"/v1/apps/web/machines/{machine['id']}", params={"force": "true"})
    assert (
        await client.post("/v1/apps/web/machines", json={"config": config(512)})
    ).status_code == 422
    clock.advance(1)
    assert (await client.post("/v1/apps/web/machines", json={"config": config(512)})).is_success


async def test_org_machine_limit_is_422(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState
) -> None:
    """Past org_machine_limit live machines, create gets Fly's billing 422."""
    emulator.patch_behaviour({"org_machine_limit": 2})
    for _ in range(2):
        assert (await client.post("/v1/apps/web/machines", json={"config": config()})).is_success
    response = await client.post("/v1/apps/web/machines", json={"config": config()})
    assert response.status_code == 422
    assert response.json() == {
        "error": "Your organization has reached its machine limit. Please contact billing@fly.io"
    }


async def test_org_regional_quota_is_403(
    client: httpx.AsyncClient, web: str, emulator: EmulatorState
) -> None:
    """An org over its regional memory quota gets 403 "over the allowed quota"."""
    emulator.patch_behaviour({"org_region_quota_mb": {"dfw": 1000}})
    body = {"config": config(768), "region": "dfw"}
    assert (await client.post("/v1/apps/web/machines", json=body)).is_success
    response = await client.post("/v1/apps/web/machines", json=body)
    assert response.status_code == 403
    assert response.json()["error"] == (
        'organization "personal" is using 768 MB of memory in dfw which is over the allowed '
        "quota. please consider other regions"
    )


async def test_volume_attached_elsewhere_is_412(client: httpx.AsyncClient, web: str) -> None:
    """Mounting a volume that another live machine uses gets 412 volume_placement_capacity."""
    volume = (
        await client.post("/v1/apps/web/volumes", json={"name": "data", "region": "ord"})
    ).json()
    mounts = [{"volume": volume["id"], "path": "/data"}]
    first = await client.post("/v1/apps/web/machines", json={"config": config(mounts=mounts)})
    assert first.status_code == 200
    assert first.json()["region"] == "ord"
    assert first.json()["config"]["mounts"] == [
        {"volume": volume["id"], "path": "/data", "name": "data", "encrypted": True, "size_gb": 1}
    ]
    attached = (await client.get(f"/v1/apps/web/volumes/{volume['id']}")).json()
    assert attached["attached_machine_id"] == first.json()["id"]
    second = await client.post("/v1/apps/web/machines", json={"config": config(mounts=mounts)})
    assert second.status_code == 412
    assert second.json() == {
        "error": f"insufficient resources to create new machine with existing volume "
        f"'{volume['id']}'",
        "status": "volume_placement_capacity",
    }
    await client.delete(f"/v1/apps/web/machines/{first.json()['id']}", params={"force": "true"})
    third = await client.post("/v1/apps/web/machines", json={"config": config(mounts=mounts)})
    assert third.status_code == 200


async def test_unknown_volume_is_400(client: httpx.AsyncClient, web: str) -> None:
    """A mount of a volume that does not exist is a 400 "volume not found"."""
    mounts = [{"volume": "vol_0000000000000000", "path": "/data"}]
    response = await client.post("/v1/apps/web/machines", json={"config": config(mounts=mounts)})
    assert response.status_code == 400
    assert "volume not found" in response.json()["error"]
