"""Apps and volumes endpoints."""

from __future__ import annotations

import httpx
import pytest

from controller.testing import FakeClock


@pytest.mark.parametrize("field", ["app_name", "name"])
async def test_create_app_accepts_either_name_field(client: httpx.AsyncClient, field) -> None:
    """POST /v1/apps takes app_name (older docs) or name (newer spec) and answers 201."""
    response = await client.post("/v1/apps", json={field: "my-app", "org_slug": "acme"})
    assert response.status_code == 201
    assert response.json()["id"] == "my-app"
    got = (await client.get("/v1/apps/my-app")).json()
    assert got["organization"]["slug"] == "acme"


async def test_duplicate_app_name_is_422_name_taken(client: httpx.AsyncClient) -> None:
    """A taken app name gets 422 with the legacy text and status name_taken."""
    await client.post("/v1/apps", json={"app_name": "dup", "org_slug": "a"})
    response = await client.post("/v1/apps", json={"app_name": "dup", "org_slug": "b"})
    assert response.status_code == 422
    assert response.json()["status"] == "name_taken"
    assert "Name has already been taken" in response.json()["error"]


async def test_list_apps_needs_org_slug(client: httpx.AsyncClient) -> None:
    """GET /v1/apps without org_slug is a 400."""
    assert (await client.get("/v1/apps")).status_code == 400


async def test_delete_app_is_202_and_destroys_machines(
    client: httpx.AsyncClient, make_machine, emulator
) -> None:
    """DELETE /v1/apps/{app} answers 202 and takes the machines with it; the name is free."""
    machine = await make_machine()
    assert (await client.delete("/v1/apps/web")).status_code == 202
    assert (await client.get("/v1/apps/web")).status_code == 404
    assert machine["id"] not in emulator.store.machines
    assert (await client.post("/v1/apps", json={"app_name": "web"})).status_code == 201
    assert (await client.get("/v1/apps/web/machines")).json() == []


async def test_volume_create_list_get_delete(
    client: httpx.AsyncClient, web: str, make_machine, clock: FakeClock
) -> None:
    """Volumes can be created, listed, fetched, and deleted once no live machine uses them."""
    created = await client.post("/v1/apps/web/volumes", json={"name": "data", "size_gb": 3})
    assert created.status_code == 200
    volume = created.json()
    assert (volume["region"], volume["size_gb"], volume["state"]) == ("iad", 3, "created")
    assert [v["id"] for v in (await client.get("/v1/apps/web/volumes")).json()] == [volume["id"]]
    machine = await make_machine(
        {"image": "nginx", "mounts": [{"volume": volume["id"], "path": "/d"}]}
    )
    path = f"/v1/apps/web/volumes/{volume['id']}"
    assert (await client.delete(path)).status_code == 412
    await client.delete(f"/v1/apps/web/machines/{machine['id']}", params={"force": "true"})
    clock.advance(1)
    assert (await client.delete(path)).status_code == 200
    assert (await client.get(path)).status_code == 404


async def test_invalid_volume_name_is_400(client: httpx.AsyncClient, web: str) -> None:
    """Volume names must be lowercase alphanumerics/underscores."""
    response = await client.post("/v1/apps/web/volumes", json={"name": "Bad-Name"})
    assert response.status_code == 400
