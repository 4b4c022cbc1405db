"""Every non-2xx and every transport failure surfaces as exactly one error from our tree."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from controller.core import errors as e
from controller.core.redaction import REDACTED
from controller.flyapi import MachinesClient
from tests.flyapi.conftest import MakeClient
from tests.flyapi.fakes import TOKEN, Script, lease_json, machine_json

APP = "acme-web"
MID = "3d8d413b29d089"
SECRET_ENV = "postgres://user:hunter2-very-secret@db/prod"
CONFIG = {"image": "img", "env": {"DATABASE_URL": SECRET_ENV, "LOG_LEVEL": "info"}}

Call = Callable[[MachinesClient], Awaitable[Any]]

CALLS: dict[str, Call] = {
    "get_app": lambda c: c.get_app(APP),
    "create_app": lambda c: c.create_app(APP, "acme"),
    "list_machines": lambda c: c.list_machines(APP),
    "get_machine": lambda c: c.get_machine(APP, MID),
    "create_machine": lambda c: c.create_machine(APP, config=CONFIG),
    "update_machine": lambda c: c.update_machine(APP, MID, config=CONFIG, nonce="n"),
    "start_machine": lambda c: c.start_machine(APP, MID),
    "stop_machine": lambda c: c.stop_machine(APP, MID),
    "destroy_machine": lambda c: c.destroy_machine(APP, MID, force=True),
    "wait_machine": lambda c: c.wait_machine(APP, MID, timeout=10),
    "get_lease": lambda c: c.get_lease(APP, MID),
    "acquire_lease": lambda c: c.acquire_lease(APP, MID, ttl=15),
    "refresh_lease": lambda c: c.refresh_lease(APP, MID, nonce="n", ttl=15),
    "release_lease": lambda c: c.release_lease(APP, MID, nonce="n"),
}

HELD = (
    "machine ID 3d8d413b29d089 lease currently held by hello@fly.io, "
    "expires at 2022-10-20 19:59:06 +0000 UTC"
)

# (status, body, call, expected class): one per class of the tree that a response can produce.
RESPONSES: list[tuple[int, Any, str, type[e.FlyAPIError]]] = [
    (401, {"error": "Authenticate: token validation error"}, "get_machine", e.Unauthorized),
    (403, {"error": "forbidden"}, "get_app", e.Forbidden),
    (
        403,
        {"error": "org is using 9 MB of memory in dfw which is over the allowed quota"},
        "create_machine",
        e.QuotaExceeded,
    ),
    (404, {"error": "machine not found"}, "get_machine", e.NotFound),
    (
        404,
        {"status": "error", "message": "lease not found", "code": "not_found"},
        "release_lease",
        e.LeaseNotFound,
    ),
    (408, {"error": "machine failed to reach desired state"}, "wait_machine", e.WaitTimeout),
    (408, {"error": "timeout"}, "create_machine", e.RequestTimeout408),
    (409, {"status": "error", "message": HELD, "code": "invalid"}, "acquire_lease", e.LeaseHeld),
    (409, {"error": "version mismatch"}, "update_machine", e.VersionConflict),
    (
        409,
        {"error": "aborted: could not reserve resource for machine: insufficient memory"},
        "start_machine",
        e.InsufficientCapacity,
    ),
    (
        412,
        {"error": "x", "status": "volume_placement_capacity"},
        "create_machine",
        e.VolumeInUse,
    ),
    (412, {"error": "machine_version mismatch"}, "update_machine", e.PreconditionFailed),
    (400, {"error": "json: cannot unmarshal"}, "stop_machine", e.BadRequest),
    (
        422,
        {"error": "Name has already been taken", "status": "name_taken"},
        "create_app",
        e.NameTaken,
    ),
    (
        422,
        {"error": "Your organization has reached its machine limit."},
        "create_machine",
        e.QuotaExceeded,
    ),
    (429, None, "create_machine", e.RateLimited),
    (500, {"error": "boom"}, "create_machine", e.ServerError),
    (504, b"", "start_machine", e.GatewayTimeout),
    (302, None, "get_app", e.UnexpectedStatus),
]


@pytest.mark.parametrize(
    ("status", "body", "call", "expected"),
    [pytest.param(*r, id=f"{r[0]}-{r[3].__name__}") for r in RESPONSES],
)
async def test_each_error_class_is_raised(
    make_client: MakeClient, status: int, body: Any, call: str, expected: type[e.FlyAPIError]
) -> None:
    """The response becomes exactly the expected class, with request id and path."""
    client = make_client(Script(default=(status, body)), retry=None)
    with pytest.raises(e.FlyAPIError) as info:
        await CALLS[call](client)
    assert type(info.value) is expected
    assert info.value.status == status
    assert info.value.request_id == f"req-{status}"
    assert info.value.path.startswith("/v1/apps")


async def test_lease_held_carries_holder_and_expiry(make_client: MakeClient) -> None:
    """A 409 on acquire exposes holder and expires_at to the executor."""
    script = Script((409, {"status": "error", "message": HELD, "code": "invalid"}))
    with pytest.raises(e.LeaseHeld) as info:
        await make_client(script).acquire_lease(APP, MID, ttl=15)
    assert info.value.holder == "hello@fly.io"
    assert info.value.expires_at == datetime(2022, 10, 20, 19, 59, 6, tzinfo=UTC)


async def test_refresh_with_a_new_nonce_raises_lease_lost(make_client: MakeClient) -> None:
    """A refresh answered with another nonce means our lease lapsed."""
    script = Script((200, lease_json("other")))
    with pytest.raises(e.LeaseLost) as info:
        await make_client(script).refresh_lease(APP, MID, nonce="mine", ttl=15)
    assert info.value.new_nonce == "other"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), e.ConnectFailed),
        (httpx.ConnectTimeout("slow connect"), e.ConnectFailed),
        (httpx.PoolTimeout("pool"), e.ConnectFailed),
        (httpx.ReadTimeout("slow read"), e.RequestTimeout),
        (httpx.WriteTimeout("slow write"), e.RequestTimeout),
        (httpx.RemoteProtocolError("peer closed connection"), e.ConnectionDropped),
        (httpx.ReadError("connection reset by peer"), e.ConnectionDropped),
        (httpx.WriteError("broken pipe"), e.ConnectionDropped),
        (httpx.ProxyError("proxy"), e.TransportFailure),
        (httpx.DecodingError("bad gzip"), e.TransportFailure),
    ],
)
async def test_httpx_exceptions_never_leak(
    make_client: MakeClient, exc: Exception, expected: type[e.FlyAPIError]
) -> None:
    """httpx exceptions are wrapped (chained with from) and never escape the client."""
    client = make_client(Script(default=exc), retry=None)
    for call in CALLS.values():
        with pytest.raises(e.FlyAPIError) as info:
            await call(client)
        assert type(info.value) is expected
        assert not isinstance(info.value, httpx.HTTPError)
        assert info.value.__cause__ is exc
        assert info.value.status is None


async def test_unsupported_protocol_is_a_config_error(make_client: MakeClient) -> None:
    """A base URL the transport cannot speak is a configuration error, not an API error."""
    client = make_client(Script(default=httpx.UnsupportedProtocol("ftp")))
    with pytest.raises(e.ConfigError):
        await client.get_app(APP)


@pytest.mark.parametrize(
    ("call", "body"),
    [
        ("get_machine", b"<html>not json</html>"),
        ("get_machine", {"name": "no id"}),
        ("list_machines", {"not": "a list"}),
        ("get_lease", [1, 2]),
        ("get_lease", {"status": "error", "message": "odd"}),
    ],
)
async def test_unreadable_2xx_bodies_raise_invalid_response(
    make_client: MakeClient, call: str, body: Any
) -> None:
    """A 2xx body that is not the documented shape raises InvalidResponse, not pydantic's."""
    client = make_client(Script(default=(200, body)))
    with pytest.raises(e.InvalidResponse) as info:
        await CALLS[call](client)
    assert info.value.__cause__ is None
    assert info.value.status == 200


async def test_invalid_machine_never_echoes_config_values(make_client: MakeClient) -> None:
    """Validation failures name fields, never the (possibly secret) input values."""
    bad = machine_json(config={"env": {"DATABASE_URL": SECRET_ENV}}, checks="not-a-list")
    client = make_client(Script(default=(200, bad)))
    with pytest.raises(e.InvalidResponse) as info:
        await client.get_machine(APP, MID)
    assert "checks" in str(info.value)
    assert SECRET_ENV not in str(info.value)
    assert SECRET_ENV not in repr(info.value)


async def test_pagination_with_a_repeating_cursor_stops(make_client: MakeClient) -> None:
    """A server handing back the same cursor forever cannot loop the client."""
    script = Script(default=(200, [machine_json()], {"fly-next-cursor": "same"}))
    with pytest.raises(e.InvalidResponse, match="cursor repeated"):
        await make_client(script).list_machines(APP, limit=1)
    assert len(script.requests) == 2


async def test_pagination_is_bounded_by_max_pages(make_client: MakeClient) -> None:
    """Ever-new cursors stop at max_pages."""
    counter = iter(range(10_000))

    def endless(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[], headers={"fly-next-cursor": f"c{next(counter)}"})

    script = Script(default=endless)
    with pytest.raises(e.InvalidResponse, match="within 5 pages"):
        await make_client(script, max_pages=5).list_machines(APP, limit=1)
    assert len(script.requests) == 5


async def test_token_and_env_values_never_leak(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Token and env values never reach errors, the client's repr or logs, even when echoed."""
    caplog.set_level(logging.DEBUG)
    echo = {"error": f"bad config {SECRET_ENV} for token {TOKEN}", "details": {"t": TOKEN}}
    token_only = {"error": f"bad token {TOKEN}"}
    script = Script((500, echo), (500, echo), (400, echo), (500, echo), default=(500, token_only))
    client = make_client(script)
    raised: list[e.FlyAPIError] = []
    calls: tuple[Callable[[], Awaitable[object]], ...] = (
        lambda: client.update_machine(APP, MID, config=CONFIG, current_version="v1"),
        lambda: client.create_machine(APP, config=CONFIG),
        lambda: client.get_machine(APP, MID),
    )
    for call in calls:
        with pytest.raises(e.FlyAPIError) as info:
            await call()
        raised.append(info.value)
    texts = [repr(client)]
    for exc in raised:
        texts += [str(exc), repr(exc), repr(exc.envelope), str(exc.__dict__)]
    texts += [r.getMessage() for r in caplog.records]
    texts += [str(r.args) for r in caplog.records]
    assert any(REDACTED in t for t in texts)
    for text in texts:
        assert TOKEN not in text
        assert SECRET_ENV not in text
    assert repr(client) == "<MachinesClient base_url='https://api.machines.dev'>"
