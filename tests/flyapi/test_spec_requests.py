"""Every request the client can send validates against the strict copy of Fly's saved spec."""

from __future__ import annotations

import json

import httpx
from spec_check import SpecChecker

from tests.flyapi.conftest import MakeClient
from tests.flyapi.fakes import lease_json, machine_json

APP = "acme-web"
MID = "3d8d413b29d089"
CONFIG = {
    "image": "registry.fly.io/acme-web:v42",
    "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512},
    "env": {"LOG_LEVEL": "info"},
    "metadata": {"reconciler/managed": "true"},
}


def answer(request: httpx.Request) -> httpx.Response:
    """A plausible 2xx for whatever was asked."""
    path = request.url.path
    if path.endswith("/lease"):
        if request.method == "DELETE":
            return httpx.Response(200, json={"status": "success", "data": {"ok": True}})
        return httpx.Response(200, json=lease_json("n"))
    if path.endswith("/wait"):
        return httpx.Response(200, json={"ok": True})
    if path.endswith(("/start", "/stop")) or request.method == "DELETE":
        return httpx.Response(200, json={"ok": True})
    if path == f"/v1/apps/{APP}/machines" and request.method == "GET":
        return httpx.Response(200, json=[machine_json()])
    if (path.startswith("/v1/apps/") and "/machines" not in path) or path == "/v1/apps":
        return httpx.Response(200, json={"name": APP})
    return httpx.Response(200, json=machine_json())


async def test_all_requests_match_the_spec(make_client: MakeClient) -> None:
    """Paths, query parameters, headers and bodies of every method pass the strict spec."""
    checker = SpecChecker()
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answer(request)

    client = make_client(handler)
    await client.get_app(APP)
    await client.create_app(APP, "acme", network="n", enable_subdomains=True)
    await client.list_machines(
        APP,
        region="ams",
        state="started",
        metadata={"reconciler/managed": "true"},
        include_deleted=True,
        summary=True,
        include_leases=True,
        limit=10,
    )
    await client.list_machines_page(APP, limit=10, cursor="c1")
    await client.get_machine(APP, MID, version="01V")
    await client.create_machine(
        APP,
        config=CONFIG,
        region="ams",
        name="web-1",
        skip_launch=True,
        skip_service_registration=True,
        lease_ttl=300,
        min_secrets_version=2,
    )
    await client.update_machine(
        APP, MID, config=CONFIG, current_version="01V", nonce="n", skip_launch=True
    )
    await client.start_machine(APP, MID, nonce="n")
    await client.stop_machine(APP, MID, signal="SIGTERM", nonce="n")
    await client.destroy_machine(APP, MID, force=True, nonce="n")
    await client.wait_machine(APP, MID, state="stopped", version="01V", timeout=30)
    await client.get_lease(APP, MID)
    await client.acquire_lease(APP, MID, ttl=15, description="machine-reconciler")
    await client.refresh_lease(APP, MID, nonce="n", ttl=15)
    await client.release_lease(APP, MID, nonce="n")
    for request in sent:
        query: dict[str, list[str]] = {}
        for name, value in request.url.params.multi_items():
            query.setdefault(name, []).append(value)
        body = json.loads(request.content) if request.content else None
        checker.check_request(request.method, request.url.path, query, request.headers, body)
    assert checker.checked == len(sent) == 15
    checker.assert_clean()
