"""Authentication on /v1 and the request log."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette

from controller.emulator import EmulatorTransport, build_app
from controller.testing import FakeClock

TOKEN = "secret-test-token-0123456789"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}, {"Authorization": ""}],
)
async def test_missing_or_malformed_token_is_401(app: Starlette, headers) -> None:
    """Without a well-formed bearer token every /v1 path answers Fly's 401 body."""
    async with httpx.AsyncClient(
        transport=EmulatorTransport(app), base_url="http://emulator", headers=headers
    ) as client:
        response = await client.get("/v1/apps", params={"org_slug": "personal"})
    assert response.status_code == 401
    assert response.json() == {"error": "Authenticate: token validation error"}


async def test_configured_token_is_the_only_one_accepted() -> None:
    """With token= set, other tokens get 401, the right one passes, control needs none."""
    app = build_app(clock=FakeClock(), token="right")
    async with httpx.AsyncClient(
        transport=EmulatorTransport(app), base_url="http://emulator"
    ) as client:
        wrong = await client.get(
            "/v1/apps", params={"org_slug": "x"}, headers={"Authorization": "Bearer wrong"}
        )
        right = await client.get(
            "/v1/apps", params={"org_slug": "x"}, headers={"Authorization": "Bearer right"}
        )
        fly_scheme = await client.get(
            "/v1/apps", params={"org_slug": "x"}, headers={"Authorization": "FlyV1 right"}
        )
        control = await client.get("/_emulator/state")
    assert (wrong.status_code, right.status_code, fly_scheme.status_code) == (401, 200, 200)
    assert control.status_code == 200


async def test_request_log_records_names_never_values(
    client: httpx.AsyncClient, make_machine
) -> None:
    """The log keeps method, path, query, parsed body, status, request id and header names only."""
    machine = await make_machine({"image": "nginx"}, region="ord")
    lease = await client.post(
        f"/v1/apps/web/machines/{machine['id']}/lease",
        params={"ttl": "30"},
        headers={"fly-machine-lease-nonce": "abcdef123456"},
    )
    log = (await client.get("/_emulator/requests")).json()
    assert [(e["method"], e["status"]) for e in log] == [("POST", 200), ("POST", 201)]
    create, acquire = log
    assert create["path"] == "/v1/apps/web/machines"
    assert create["body"] == {"config": {"image": "nginx"}, "region": "ord"}
    assert acquire["query"] == {"ttl": ["30"]}
    assert acquire["request_id"] == lease.headers["fly-request-id"]
    assert "authorization" in acquire["headers_present"]
    assert "fly-machine-lease-nonce" in acquire["headers_present"]
    assert [e["seq"] for e in log] == [1, 2]
    dumped = json.dumps(log)
    assert TOKEN not in dumped
    assert "abcdef123456" not in dumped
    assert "Bearer" not in dumped
    assert (await client.delete("/_emulator/requests")).status_code == 200
    assert (await client.get("/_emulator/requests")).json() == []


async def test_control_api_calls_are_not_logged(client: httpx.AsyncClient) -> None:
    """Only /v1 requests go into the log, including rejected ones."""
    await client.get("/_emulator/state")
    await client.get("/v1/apps", headers={"Authorization": "nope"})
    log = (await client.get("/_emulator/requests")).json()
    assert [(e["path"], e["status"]) for e in log] == [("/v1/apps", 401)]
