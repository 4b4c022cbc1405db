"""What the client sends: paths, query strings, headers and bodies of every endpoint."""

from __future__ import annotations

from typing import Any

import pytest

from controller.flyapi import Machine, MachinesPage
from tests.flyapi.conftest import MakeClient
from tests.flyapi.fakes import TOKEN, Script, lease_json, machine_json

APP = "acme-web"
MID = "3d8d413b29d089"
MPATH = f"/v1/apps/{APP}/machines/{MID}"
CONFIG: dict[str, Any] = {"image": "registry.fly.io/acme-web:v42", "env": {"LOG_LEVEL": "info"}}


def query(script: Script) -> list[tuple[str, str]]:
    """The last request's query parameters, in order."""
    return list(script.last.url.params.multi_items())


async def test_every_request_carries_bearer_token_and_user_agent(make_client: MakeClient) -> None:
    """Authorization is a bearer token; a user agent names us."""
    script = Script((200, machine_json()))
    await make_client(script).get_machine(APP, MID)
    assert script.last.headers["authorization"] == f"Bearer {TOKEN}"
    assert script.last.headers["user-agent"].startswith("machine-reconciler/")
    assert script.last.url.host == "api.machines.dev"


async def test_get_app(make_client: MakeClient) -> None:
    """get_app is GET /v1/apps/{app} and parses the App."""
    script = Script((200, {"id": "app1", "name": APP, "organization": {"slug": "acme"}}))
    app = await make_client(script).get_app(APP)
    assert (script.last.method, script.last.url.path) == ("GET", f"/v1/apps/{APP}")
    assert app.name == APP
    assert app.organization is not None
    assert app.organization.slug == "acme"


async def test_create_app_sends_spec_2025_field_names(make_client: MakeClient) -> None:
    """create_app posts app_name + org_slug; an empty 201 still yields the app's name."""
    script = Script((201, None))
    app = await make_client(script).create_app(APP, "acme", network="net1")
    assert (script.last.method, script.last.url.path) == ("POST", "/v1/apps")
    assert script.body() == {"app_name": APP, "org_slug": "acme", "network": "net1"}
    assert app.name == APP


async def test_list_machines_page_query_and_cursor(make_client: MakeClient) -> None:
    """Filters become query parameters; metadata.<k>=<v>; fly-next-cursor is returned."""
    script = Script((200, [machine_json()], {"fly-next-cursor": "CUR2"}))
    page = await make_client(script).list_machines_page(
        APP,
        region="ams",
        state=["started", "stopped"],
        metadata={"reconciler/managed": "true", "reconciler/group": "web"},
        include_deleted=True,
        summary=True,
        include_leases=True,
        limit=50,
        cursor="CUR1",
    )
    assert script.last.url.path == f"/v1/apps/{APP}/machines"
    assert query(script) == [
        ("include_deleted", "true"),
        ("region", "ams"),
        ("state", "started,stopped"),
        ("summary", "true"),
        ("include_leases", "true"),
        ("metadata.reconciler/managed", "true"),
        ("metadata.reconciler/group", "web"),
        ("limit", "50"),
        ("cursor", "CUR1"),
    ]
    assert isinstance(page, MachinesPage)
    assert page.next_cursor == "CUR2"
    assert [m.id for m in page.machines] == [MID]


async def test_list_machines_defaults_send_no_flags(make_client: MakeClient) -> None:
    """False flags are omitted (the saved spec knows only four parameters)."""
    script = Script((200, []))
    assert await make_client(script).list_machines(APP) == []
    assert query(script) == []


async def test_list_machines_limit_is_clamped(make_client: MakeClient) -> None:
    """limit is kept within Fly's 1..1000."""
    script = Script((200, []), (200, []))
    client = make_client(script)
    await client.list_machines_page(APP, limit=5000)
    assert ("limit", "1000") in query(script)
    await client.list_machines_page(APP, limit=0)
    assert ("limit", "1") in query(script)


async def test_list_machines_follows_three_pages(make_client: MakeClient) -> None:
    """list_machines follows fly-next-cursor to the end and keeps each machine once."""
    script = Script(
        (200, [machine_json("m1"), machine_json("m2")], {"fly-next-cursor": "c2"}),
        (200, [], {"fly-next-cursor": "c3"}),  # advisory limit: an empty page mid-way
        (200, [machine_json("m2", state="stopped"), machine_json("m3")]),
    )
    machines = await make_client(script).list_machines(APP, limit=2, region="ams")
    assert [m.id for m in machines] == ["m1", "m2", "m3"]
    assert machines[1].state == "stopped"
    cursors = [dict(r.url.params.multi_items()).get("cursor") for r in script.requests]
    assert cursors == [None, "c2", "c3"]
    assert all(r.url.params["region"] == "ams" for r in script.requests)


async def test_get_machine_with_version(make_client: MakeClient) -> None:
    """get_machine asks for a version with ?version= and parses the Machine."""
    script = Script((200, machine_json()))
    machine = await make_client(script).get_machine(APP, MID, version="01HQ")
    assert (script.last.method, script.last.url.path) == ("GET", MPATH)
    assert query(script) == [("version", "01HQ")]
    assert isinstance(machine, Machine)
    assert machine.version == "01HQ73A7BFFDF1B6WMGHFZZ4E7"


async def test_path_segments_are_escaped(make_client: MakeClient) -> None:
    """An odd app name cannot change the path."""
    script = Script((200, machine_json()))
    await make_client(script).get_machine("a/b?c", MID)
    assert script.last.url.raw_path.decode().startswith("/v1/apps/a%2Fb%3Fc/machines/")


async def test_create_machine_body(make_client: MakeClient) -> None:
    """create_machine posts the CreateMachineRequest fields it was given, no others."""
    script = Script((200, machine_json(nonce="n0nce")))
    machine = await make_client(script).create_machine(
        APP,
        config=CONFIG,
        region="ams",
        name="web-1",
        skip_launch=True,
        skip_service_registration=True,
        lease_ttl=300,
        min_secrets_version=7,
    )
    assert (script.last.method, script.last.url.path) == ("POST", f"/v1/apps/{APP}/machines")
    assert script.body() == {
        "config": CONFIG,
        "region": "ams",
        "name": "web-1",
        "skip_launch": True,
        "skip_service_registration": True,
        "lease_ttl": 300,
        "min_secrets_version": 7,
    }
    assert machine.nonce == "n0nce"


async def test_create_machine_minimal_body(make_client: MakeClient) -> None:
    """Without options only the config is sent."""
    script = Script((200, machine_json()))
    await make_client(script).create_machine(APP, config=CONFIG)
    assert script.body() == {"config": CONFIG}


async def test_update_machine_sends_current_version_and_nonce(make_client: MakeClient) -> None:
    """update posts the full config, current_version and the lease nonce header."""
    script = Script((200, machine_json(instance_id="01NEW")))
    machine = await make_client(script).update_machine(
        APP, MID, config=CONFIG, current_version="01OLD", nonce="n0nce", skip_launch=True
    )
    assert (script.last.method, script.last.url.path) == ("POST", MPATH)
    assert script.last.headers["fly-machine-lease-nonce"] == "n0nce"
    assert script.body() == {"config": CONFIG, "current_version": "01OLD", "skip_launch": True}
    assert machine.version == "01NEW"


async def test_update_without_nonce_sends_no_nonce_header(make_client: MakeClient) -> None:
    """No nonce, no header."""
    script = Script((200, machine_json()))
    await make_client(script).update_machine(APP, MID, config=CONFIG)
    assert "fly-machine-lease-nonce" not in script.last.headers
    assert script.body() == {"config": CONFIG}


async def test_start_machine(make_client: MakeClient) -> None:
    """start is POST .../start with the nonce header and no body."""
    script = Script((200, {"message": "", "status": "ok", "previous_state": "stopped"}))
    result = await make_client(script).start_machine(APP, MID, nonce="n")
    assert (script.last.method, script.last.url.path) == ("POST", MPATH + "/start")
    assert script.last.headers["fly-machine-lease-nonce"] == "n"
    assert script.last.content == b""
    assert result.previous_state == "stopped"


async def test_stop_machine_always_sends_a_body(make_client: MakeClient) -> None:
    """stop sends a StopRequest, even an empty one (Fly answers 400 to no body)."""
    script = Script((200, {"ok": True}), (200, {"ok": True}))
    client = make_client(script)
    await client.stop_machine(APP, MID)
    assert (script.last.method, script.last.url.path) == ("POST", MPATH + "/stop")
    assert script.body() == {}
    await client.stop_machine(APP, MID, signal="SIGTERM", timeout=30, nonce="n")
    assert script.body() == {"signal": "SIGTERM", "timeout": "30s"}
    assert script.last.headers["fly-machine-lease-nonce"] == "n"


async def test_destroy_machine_force(make_client: MakeClient) -> None:
    """destroy is DELETE with ?force=true when forced, nothing otherwise."""
    script = Script((200, {"ok": True}), (200, None))
    client = make_client(script)
    result = await client.destroy_machine(APP, MID, force=True, nonce="n")
    assert (script.last.method, script.last.url.path) == ("DELETE", MPATH)
    assert query(script) == [("force", "true")]
    assert script.last.headers["fly-machine-lease-nonce"] == "n"
    assert result.ok is True
    await client.destroy_machine(APP, MID)
    assert query(script) == []


@pytest.mark.parametrize(
    ("seconds", "sent"), [(30, "30"), (0.2, "1"), (-5, "1"), (59.1, "60"), (90, "60")]
)
async def test_wait_machine_clamps_timeout(
    make_client: MakeClient, seconds: float, sent: str
) -> None:
    """The wait timeout is whole seconds within 1..60."""
    script = Script((200, {"ok": True}))
    await make_client(script).wait_machine(APP, MID, timeout=seconds)
    assert dict(query(script))["timeout"] == sent


async def test_wait_machine_sends_state_and_both_version_names(make_client: MakeClient) -> None:
    """wait sends state, timeout, and the version as both version and instance_id."""
    script = Script((200, {"ok": True, "state": "stopped", "version": "01V", "event_id": "e"}))
    result = await make_client(script).wait_machine(
        APP, MID, state="stopped", version="01V", timeout=60
    )
    assert (script.last.method, script.last.url.path) == ("GET", MPATH + "/wait")
    assert query(script) == [
        ("state", "stopped"),
        ("timeout", "60"),
        ("version", "01V"),
        ("instance_id", "01V"),
    ]
    assert (result.ok, result.state, result.version) == (True, "stopped", "01V")


async def test_wait_http_timeout_exceeds_the_long_poll(make_client: MakeClient) -> None:
    """The HTTP read timeout of /wait is the wait plus a margin, above 60 s."""
    script = Script((200, None))
    result = await make_client(script, wait_timeout_margin=15.0).wait_machine(APP, MID, timeout=60)
    assert script.last.extensions["timeout"]["read"] == 75.0
    assert result.ok is True


async def test_acquire_lease_body_and_wrapped_answer(make_client: MakeClient) -> None:
    """acquire posts CreateLeaseRequest {ttl, description} and unwraps {status, data}."""
    script = Script((201, lease_json()))
    lease = await make_client(script).acquire_lease(APP, MID, ttl=15, description="reconciler")
    assert (script.last.method, script.last.url.path) == ("POST", MPATH + "/lease")
    assert script.body() == {"ttl": 15, "description": "reconciler"}
    assert query(script) == []
    assert "fly-machine-lease-nonce" not in script.last.headers
    assert lease.nonce == "5c35f65c9f95"
    assert lease.expires_at == 1708569778
    assert lease.version == "01HQ73A7BFFDF1B6WMGHFZZ4E7"


async def test_acquire_lease_accepts_the_flat_spec_shape(make_client: MakeClient) -> None:
    """The spec's flat Lease body parses too."""
    script = Script((200, lease_json()["data"]))
    lease = await make_client(script).acquire_lease(APP, MID, ttl=15)
    assert lease.nonce == "5c35f65c9f95"
    assert script.body() == {"ttl": 15}


async def test_refresh_lease_sends_nonce(make_client: MakeClient) -> None:
    """refresh is the same POST with our nonce in the header."""
    script = Script((200, lease_json("abc")))
    lease = await make_client(script).refresh_lease(APP, MID, nonce="abc", ttl=15)
    assert script.last.headers["fly-machine-lease-nonce"] == "abc"
    assert script.body() == {"ttl": 15}
    assert lease.nonce == "abc"


async def test_get_and_release_lease(make_client: MakeClient) -> None:
    """get_lease is GET .../lease; release is DELETE .../lease with the nonce."""
    script = Script((200, lease_json()), (200, {"status": "success", "data": {"ok": True}}))
    client = make_client(script)
    lease = await client.get_lease(APP, MID)
    assert (script.last.method, script.last.url.path) == ("GET", MPATH + "/lease")
    assert lease.owner == "hello@fly.io"
    await client.release_lease(APP, MID, nonce="abc")  # typed to return None
    assert (script.last.method, script.last.url.path) == ("DELETE", MPATH + "/lease")
    assert script.last.headers["fly-machine-lease-nonce"] == "abc"
