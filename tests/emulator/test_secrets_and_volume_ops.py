"""App secrets with their version, min_secrets_version, volume update/extend/snapshots, and 501s."""

from __future__ import annotations

import httpx
import pytest

IMAGE = "registry.fly.io/web:deployment-01"


async def set_secrets(client: httpx.AsyncClient, values: dict[str, str | None]) -> httpx.Response:
    return await client.post("/v1/apps/web/secrets", json={"values": values})


async def test_secrets_set_list_unset_and_delete_bump_the_version(
    client: httpx.AsyncClient, web: str
) -> None:
    first = await set_secrets(client, {"DATABASE_URL": "postgres://x", "TOKEN": "t1"})
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    assert [s["name"] for s in first.json()["secrets"]] == ["DATABASE_URL", "TOKEN"]
    digest = first.json()["secrets"][1]["digest"]

    second = await set_secrets(client, {"TOKEN": "t2", "DATABASE_URL": None})
    assert second.json()["version"] == 2
    (token,) = second.json()["secrets"]
    assert token["name"] == "TOKEN"
    assert token["digest"] != digest, "a new value has a new digest"

    listed = await client.get("/v1/apps/web/secrets")
    assert listed.json() == {"secrets": second.json()["secrets"]}
    assert "t2" not in listed.text, "values are never returned"

    deleted = await client.delete("/v1/apps/web/secrets/TOKEN")
    assert deleted.json() == {"version": 3}
    assert (await client.get("/v1/apps/web/secrets")).json() == {"secrets": []}
    missing = await client.delete("/v1/apps/web/secrets/TOKEN")
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "body", [{}, {"values": {}}, {"values": {"1BAD": "x"}}, {"values": {"A": 5}}, [1]]
)
async def test_bad_secret_writes_are_400(client: httpx.AsyncClient, web: str, body: object) -> None:
    response = await client.post("/v1/apps/web/secrets", json=body)
    assert response.status_code == 400
    assert "error" in response.json()
    assert (await client.get("/v1/apps/web/secrets")).json() == {"secrets": []}


async def test_min_secrets_version_newer_than_the_app_is_412(
    client: httpx.AsyncClient, web: str
) -> None:
    body = {"config": {"image": IMAGE}, "min_secrets_version": 1}
    refused = await client.post("/v1/apps/web/machines", json=body)
    assert refused.status_code == 412
    assert "min_secrets_version 1" in refused.json()["error"]
    version = (await set_secrets(client, {"A": "1"})).json()["version"]
    body["min_secrets_version"] = version
    created = await client.post("/v1/apps/web/machines", json=body)
    assert created.status_code == 200, created.text

    update = {"config": {"image": IMAGE}, "min_secrets_version": version + 1}
    path = f"/v1/apps/web/machines/{created.json()['id']}"
    assert (await client.post(path, json=update)).status_code == 412
    update["min_secrets_version"] = version
    assert (await client.post(path, json=update)).status_code == 200


async def test_min_secrets_version_must_be_an_integer(client: httpx.AsyncClient, web: str) -> None:
    body = {"config": {"image": IMAGE}, "min_secrets_version": "1"}
    response = await client.post("/v1/apps/web/machines", json=body)
    assert response.status_code == 400
    assert "min_secrets_version of type int" in response.json()["error"]


# ----------------------------------------------------------------------------- volumes
@pytest.fixture
async def volume(client: httpx.AsyncClient, web: str) -> str:
    response = await client.post("/v1/apps/web/volumes", json={"name": "data", "size_gb": 1})
    volume_id: str = response.json()["id"]
    return volume_id


async def test_volume_update_changes_only_given_fields(
    client: httpx.AsyncClient, volume: str
) -> None:
    path = f"/v1/apps/web/volumes/{volume}"
    updated = await client.put(path, json={"snapshot_retention": 14})
    assert updated.status_code == 200, updated.text
    assert (updated.json()["snapshot_retention"], updated.json()["auto_backup_enabled"]) == (
        14,
        True,
    )
    updated = await client.put(path, json={"auto_backup_enabled": False})
    assert (updated.json()["snapshot_retention"], updated.json()["auto_backup_enabled"]) == (
        14,
        False,
    )
    assert (await client.get(path)).json()["snapshot_retention"] == 14
    for bad in ({"snapshot_retention": 0}, {"snapshot_retention": 61}):
        assert (await client.put(path, json=bad)).status_code == 400
    typed = await client.put(path, json={"auto_backup_enabled": "no"})
    assert typed.status_code == 400
    assert "updateVolumeRequest.auto_backup_enabled of type bool" in typed.json()["error"]


async def test_volume_extend_grows_only(client: httpx.AsyncClient, volume: str) -> None:
    path = f"/v1/apps/web/volumes/{volume}/extend"
    grown = await client.put(path, json={"size_gb": 3})
    assert grown.status_code == 200, grown.text
    assert grown.json()["volume"]["size_gb"] == 3
    assert grown.json()["needs_restart"] is False, "no machine has it mounted"
    for size in (3, 2, 501):
        response = await client.put(path, json={"size_gb": size})
        assert response.status_code == 400, size
    assert (await client.get(f"/v1/apps/web/volumes/{volume}")).json()["size_gb"] == 3


async def test_extending_a_mounted_volume_needs_a_restart(
    client: httpx.AsyncClient, volume: str
) -> None:
    config = {"image": IMAGE, "mounts": [{"volume": volume, "path": "/data"}]}
    created = await client.post("/v1/apps/web/machines", json={"config": config})
    assert created.status_code == 200, created.text
    grown = await client.put(f"/v1/apps/web/volumes/{volume}/extend", json={"size_gb": 2})
    assert grown.json()["needs_restart"] is True


async def test_snapshots_are_listed_after_they_are_taken(
    client: httpx.AsyncClient, volume: str
) -> None:
    path = f"/v1/apps/web/volumes/{volume}/snapshots"
    assert (await client.get(path)).json() == []
    taken = await client.post(path)
    assert (taken.status_code, taken.content) == (200, b"")
    await client.post(path)
    listed = (await client.get(path)).json()
    assert len(listed) == 2
    assert len({s["id"] for s in listed}) == 2
    assert all(s["size"] == 1024**3 and s["status"] == "created" for s in listed)
    assert (await client.get("/v1/apps/web/volumes/vol_nope/snapshots")).status_code == 404


# ----------------------------------------------------------------------------- not emulated
@pytest.mark.parametrize(
    ("method", "path", "operation"),
    [
        ("POST", "/v1/apps/web/machines/0123/exec", "Machines_exec"),
        ("GET", "/v1/apps/web/machines/0123/ps", "Machines_list_processes"),
        ("POST", "/v1/apps/web/machines/0123/signal", "Machines_signal"),
        ("POST", "/v1/apps/web/secrets/k/type/signing", "Secret_create"),
        ("POST", "/v1/apps/web/secrets/k/type/signing/generate", "Secret_generate"),
        ("POST", "/v1/tokens/kms", "Tokens_request_Kms"),
        ("POST", "/v1/tokens/oidc", "Tokens_request_OIDC"),
    ],
)
async def test_unmodelled_operations_answer_501_not_404(
    client: httpx.AsyncClient, web: str, method: str, path: str, operation: str
) -> None:
    response = await client.request(method, path)
    assert response.status_code == 501
    assert response.json() == {"error": f"not emulated: {operation}"}


async def test_every_operation_of_the_spec_is_routed(client: httpx.AsyncClient, web: str) -> None:
    """No operation of the saved spec falls through to the router's 404 or 405."""
    from controller.emulator.spec import load_spec

    spec = load_spec()
    seen = 0
    for template, item in spec["paths"].items():
        path = "/v1" + template.replace("{app_name}", "web")
        path = path.replace("{", "").replace("}", "")
        for method in item:
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            response = await client.request(method.upper(), path)
            seen += 1
            assert response.status_code != 405, (method, template)
            if response.content:
                assert response.json() != {"error": "Not Found"}, (method, template)
    assert seen == 41
