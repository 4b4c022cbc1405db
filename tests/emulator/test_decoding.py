"""Typed request decoding: bodies and query strings are refused like Fly's Go server does (400).

Every case goes over HTTP through the in-process emulator; the bad values are the ones the
schemathesis run of issue #12 found accepted.
"""

from __future__ import annotations

import httpx
import pytest

from controller.model.regions import DEPRECATED_REGIONS, FLY_REGIONS

IMAGE = "registry.fly.io/web:deployment-01"


async def create(client: httpx.AsyncClient, body: dict[str, object]) -> httpx.Response:
    return await client.post("/v1/apps/web/machines", json=body)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"metrics": {"port": [], "path": 5}},
            "json: cannot unmarshal array into Go struct field "
            "MachineMetrics.config.metrics.port of type int",
        ),
        (
            {"services": ["http"]},
            "json: cannot unmarshal string into Go struct field "
            "MachineConfig.config.services of type fly.MachineService",
        ),
        (
            {"auto_destroy": "yes"},
            "json: cannot unmarshal string into Go struct field "
            "MachineConfig.config.auto_destroy of type bool",
        ),
        (
            {"schedule": 42},
            "json: cannot unmarshal number into Go struct field "
            "MachineConfig.config.schedule of type string",
        ),
        (
            {"guest": {"cpus": 1.5}},
            "json: cannot unmarshal number 1.5 into Go struct field "
            "MachineGuest.config.guest.cpus of type int",
        ),
        (
            {"services": [{"ports": [{"port": "80"}]}]},
            "json: cannot unmarshal string into Go struct field "
            "MachinePort.config.services.ports.port of type int",
        ),
        (
            {"env": {"A": 1}},
            "json: cannot unmarshal number into Go struct field "
            "MachineConfig.config.env of type string",
        ),
        (
            {"checks": {"alive": {"interval": {"seconds": 5}}}},
            "json: cannot unmarshal object into Go struct field "
            "MachineCheck.config.checks.interval of type fly.Duration",
        ),
    ],
)
async def test_typed_config_fields_are_checked_deep_in_the_tree(
    client: httpx.AsyncClient, web: str, config: dict[str, object], message: str
) -> None:
    """A wrong JSON type anywhere under config is a 400 naming the Go struct field."""
    response = await create(client, {"config": {"image": IMAGE, **config}})
    assert response.status_code == 400, response.text
    assert response.json() == {"error": message}
    listed = await client.get("/v1/apps/web/machines")
    assert listed.json() == [], "a refused create must not store anything"


async def test_top_level_request_fields_are_typed(client: httpx.AsyncClient, web: str) -> None:
    response = await create(client, {"config": {"image": IMAGE}, "skip_launch": "true"})
    assert response.status_code == 400
    assert response.json()["error"] == (
        "json: cannot unmarshal string into Go struct field "
        "createMachineRequest.skip_launch of type bool"
    )


async def test_update_body_is_decoded_too(make_machine, client: httpx.AsyncClient) -> None:
    machine = await make_machine()
    response = await client.post(
        f"/v1/apps/web/machines/{machine['id']}",
        json={"config": {"image": IMAGE, "restart": {"max_retries": "3"}}},
    )
    assert response.status_code == 400
    assert "MachineRestart.config.restart.max_retries of type int" in response.json()["error"]


async def test_unknown_keys_and_nulls_are_accepted_like_go(
    client: httpx.AsyncClient, web: str
) -> None:
    """Go ignores unknown keys (Fly never stores them) and treats null as absent."""
    config = {"image": IMAGE, "future_field": {"x": 1}, "metrics": None, "env": {"A": None}}
    response = await create(client, {"config": config, "region": None, "brand_new": True})
    assert response.status_code == 200, response.text
    stored = response.json()["config"]
    assert "metrics" not in stored
    assert stored["env"] == {"A": ""}, "null into map[string]string is the zero string"
    assert "future_field" not in stored


async def test_field_names_match_case_insensitively(client: httpx.AsyncClient, web: str) -> None:
    """encoding/json matches struct fields case-insensitively, so "Image" sets the image."""
    response = await create(client, {"config": {"Image": IMAGE}})
    assert response.status_code == 200, response.text
    assert response.json()["config"]["image"] == IMAGE


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"checks": {"c": {"kind": "sometimes"}}}, "config.checks.kind"),
        ({"services": [{"autostop": "hibernate"}]}, "config.services.autostop"),
        ({"stop_config": {"timeout": "ten seconds"}}, "config.stop_config.timeout"),
    ],
)
async def test_enums_and_durations_are_checked(
    client: httpx.AsyncClient, web: str, config: dict[str, object], fragment: str
) -> None:
    response = await create(client, {"config": {"image": IMAGE, **config}})
    assert response.status_code == 400
    assert fragment in response.json()["error"]


async def test_go_forms_the_spec_does_not_describe_are_accepted(
    client: httpx.AsyncClient, web: str
) -> None:
    """Durations are Go strings or nanoseconds, autostop is also a boolean (fly-go)."""
    config = {
        "image": IMAGE,
        "stop_config": {"timeout": "10s"},
        "checks": {"c": {"type": "tcp", "port": 8080, "interval": 15_000_000_000}},
        "services": [{"internal_port": 8080, "autostop": True}],
    }
    response = await create(client, {"config": config})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/apps/web/machines", {"summary": "banana"}),
        ("/v1/apps/web/machines", {"include_deleted": "yes"}),
        ("/v1/apps/web/machines", {"limit": "ten"}),
        ("/v1/apps/web/machines", {"summary": ""}),
    ],
)
async def test_typed_query_parameters_are_checked(
    client: httpx.AsyncClient, web: str, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 400
    name = next(iter(params))
    assert response.json()["error"].startswith(
        f"invalid_argument: invalid value for query parameter {name}"
    )


async def test_force_null_is_not_a_boolean(make_machine, client: httpx.AsyncClient) -> None:
    machine = await make_machine()
    path = f"/v1/apps/web/machines/{machine['id']}"
    refused = await client.delete(path, params={"force": "null"})
    assert refused.status_code == 400
    assert 'parsing "null"' in refused.json()["error"]
    accepted = await client.delete(path, params={"force": "True"})
    assert accepted.status_code == 200, "Go's ParseBool spellings are accepted"


async def test_go_boolean_spellings_work(make_machine, client: httpx.AsyncClient) -> None:
    await make_machine()
    for spelling in ("1", "t", "TRUE"):
        listed = await client.get("/v1/apps/web/machines", params={"summary": spelling})
        assert listed.status_code == 200
        assert "config" not in listed.json()[0]


async def test_405_names_the_allowed_methods(client: httpx.AsyncClient, web: str) -> None:
    response = await client.request("TRACE", "/v1/apps/web")
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "DELETE"}
    assert "error" in response.json()


# ----------------------------------------------------------------------------- regions
async def test_every_listed_region_is_accepted(client: httpx.AsyncClient, web: str) -> None:
    for region in sorted(FLY_REGIONS):
        response = await create(
            client, {"config": {"image": IMAGE}, "region": region, "skip_launch": True}
        )
        assert response.status_code == 200, (region, response.text)
        assert response.json()["region"] == region


@pytest.mark.parametrize("region", ["sg", "xyz", "IAD", "iad,ord", "i\x00d", "\t"])
async def test_unknown_or_unprintable_regions_are_422(
    client: httpx.AsyncClient, web: str, region: str
) -> None:
    response = await create(client, {"config": {"image": IMAGE}, "region": region})
    assert response.status_code == 422
    assert "invalid region" in response.json()["error"]
    volume = await client.post("/v1/apps/web/volumes", json={"name": "data", "region": region})
    assert volume.status_code == 422


async def test_deprecated_region_says_so(client: httpx.AsyncClient, web: str) -> None:
    region = sorted(DEPRECATED_REGIONS)[0]
    response = await create(client, {"config": {"image": IMAGE}, "region": region})
    assert response.status_code == 422
    assert region in response.json()["error"]
    assert "no longer offers" in response.json()["error"]


def test_region_lists_are_disjoint_codes() -> None:
    assert not FLY_REGIONS & DEPRECATED_REGIONS
    assert all(len(code) == 3 and code.isalpha() and code.islower() for code in FLY_REGIONS)
