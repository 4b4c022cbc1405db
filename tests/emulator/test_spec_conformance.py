"""Responses validate against the component schemas of the saved OpenAPI spec (SPEC-2025).

The saved spec predates some fields (``version``, ``cordoned``, ``lease``), which is fine: its
schemas do not forbid extra properties.  The lease endpoints answer in the real wrapped envelope,
so only ``data`` is checked against the flat ``Lease`` schema (FLY_API.md 1.7).  No field in the
spec is nullable, so the emulator must leave absent values out rather than send ``null``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from controller.emulator.spec import load_spec

IMAGE = "registry.fly.io/web:deployment-01"


@pytest.fixture(scope="module")
def registry() -> Registry:
    resource = Resource.from_contents(load_spec(), default_specification=DRAFT4)
    return Registry().with_resources([("urn:fly-spec", resource)])  # typed; with_resource is not


def check(registry: Registry, schema: str, instance: Any) -> None:
    validator = OAS30Validator(
        {"$ref": f"urn:fly-spec#/components/schemas/{schema}"}, registry=registry
    )
    validator.validate(instance)


async def test_machine_shapes_match_the_spec(
    registry: Registry, client: httpx.AsyncClient, make_machine, clock
) -> None:
    """Machine, events, checks, versions and lease data match the spec's schemas."""
    config = {
        "image": IMAGE,
        "env": {"A": "1"},
        "services": [{"internal_port": 8080, "protocol": "tcp", "checks": [{"type": "tcp"}]}],
        "checks": {"alive": {"type": "http", "port": 8080, "path": "/"}},
    }
    created = await make_machine(config, lease_ttl=30)
    check(registry, "Machine", created)
    clock.advance(30)
    path = f"/v1/apps/web/machines/{created['id']}"
    machine = (await client.get(path)).json()
    assert machine["checks"]
    check(registry, "Machine", machine)
    for event in (await client.get(path + "/events")).json():
        check(registry, "MachineEvent", event)
    for version in (await client.get(path + "/versions")).json():
        check(registry, "MachineVersion", version)
    lease = (await client.post(path + "/lease", params={"ttl": 30})).json()
    check(registry, "Lease", lease["data"])
    for listed in (await client.get("/v1/apps/web/machines")).json():
        check(registry, "Machine", listed)


async def test_app_volume_and_error_shapes_match_the_spec(
    registry: Registry, client: httpx.AsyncClient, web: str
) -> None:
    """App, ListAppsResponse, Volume and ErrorResponse bodies match the spec's schemas."""
    check(registry, "App", (await client.get("/v1/apps/web")).json())
    check(registry, "ListAppsResponse", (await client.get("/v1/apps?org_slug=personal")).json())
    volume = (await client.post("/v1/apps/web/volumes", json={"name": "data"})).json()
    check(registry, "Volume", volume)
    capacity_error = {
        "error": "insufficient resources available to fulfill request",
        "status": "insufficient_capacity",
    }
    check(registry, "ErrorResponse", capacity_error)
    check(registry, "ErrorResponse", (await client.get("/v1/apps/web/machines/x")).json())
