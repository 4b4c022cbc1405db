"""Retries inside the client, on a fake clock: exact sleep schedules, and what is never retried."""

from __future__ import annotations

import email.utils
import logging
import random

import httpx
import pytest
from pydantic import SecretStr

from controller.core import errors as e
from controller.core.retry import Backoff
from controller.flyapi import MachinesClient, RateLimits, ResponseEvent
from controller.settings import Settings
from controller.testing import FakeClock
from tests.flyapi.conftest import MakeClient
from tests.flyapi.fakes import TOKEN, Script, machine_json

APP = "acme-web"
MID = "3d8d413b29d089"
CONFIG = {"image": "img"}
OK_MACHINE = (200, machine_json())


async def test_429_retry_after_is_a_floor(make_client: MakeClient, fake_clock: FakeClock) -> None:
    """429 waits Retry-After when longer than backoff, the backoff when longer (even for start)."""
    script = Script(
        (429, None, {"retry-after": "5"}),
        (429, None, {"retry-after": "0.5"}),
        (429, None),
        (200, {"ok": True}),
    )
    await make_client(script).start_machine(APP, MID)
    assert fake_clock.sleeps == [5.0, 2.0, 4.0]
    assert len(script.requests) == 4


async def test_429_http_date_retry_after_uses_the_clock(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """An HTTP-date Retry-After is measured against the injected clock's wall time."""
    when = email.utils.formatdate(fake_clock.now() + 30, usegmt=True)
    script = Script((429, None, {"retry-after": when}), OK_MACHINE)
    await make_client(script).get_machine(APP, MID)
    assert fake_clock.sleeps == [30.0]


async def test_429_with_a_huge_retry_after_is_raised_not_slept(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """A Retry-After above max_retry_after goes back to the caller with the hint."""
    script = Script((429, None, {"retry-after": "600"}))
    with pytest.raises(e.RateLimited) as info:
        await make_client(script).get_machine(APP, MID)
    assert info.value.retry_after == 600.0
    assert fake_clock.sleeps == []


async def test_429_retries_create_since_nothing_happened(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """Even create is repeated after 429: Fly did nothing."""
    script = Script((429, None, {"retry-after": "3"}), OK_MACHINE)
    await make_client(script).create_machine(APP, config=CONFIG)
    assert fake_clock.sleeps == [3.0]
    assert len(script.requests) == 2


async def test_5xx_backoff_schedule_on_get(make_client: MakeClient, fake_clock: FakeClock) -> None:
    """GET retries 500/502/503 after 1 s, 2 s, 4 s and then succeeds."""
    script = Script((500, {"error": "a"}), (502, b"<html/>"), (503, None), OK_MACHINE)
    machine = await make_client(script).get_machine(APP, MID)
    assert machine.id == MID
    assert fake_clock.sleeps == [1.0, 2.0, 4.0]
    assert fake_clock.monotonic() == 1_000.0 + 7.0


async def test_5xx_gives_up_after_max_attempts(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """Four attempts in all, then the last error is raised."""
    script = Script(default=(500, {"error": "down"}))
    with pytest.raises(e.ServerError):
        await make_client(script).list_machines(APP)
    assert len(script.requests) == 4
    assert fake_clock.sleeps == [1.0, 2.0, 4.0]


async def test_504_waits_at_least_10s(make_client: MakeClient, fake_clock: FakeClock) -> None:
    """504 retries never come sooner than 10 s."""
    script = Script((504, None), (504, None), OK_MACHINE)
    await make_client(script).get_machine(APP, MID)
    assert fake_clock.sleeps == [10.0, 10.0]


@pytest.mark.parametrize(
    "answer",
    [
        (500, {"error": "boom"}),
        (502, None),
        (504, None),
        (408, {"error": "timeout"}),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("closed"),
        httpx.ReadError("reset"),
    ],
    ids=["500", "502", "504", "408", "read-timeout", "protocol", "reset"],
)
async def test_create_is_never_retried_on_ambiguous_failures(
    make_client: MakeClient, fake_clock: FakeClock, answer: object
) -> None:
    """A create that may have happened is raised at once (the executor re-lists by tag)."""
    script = Script(answer, OK_MACHINE)  # type: ignore[arg-type]
    with pytest.raises(e.FlyAPIError) as info:
        await make_client(script).create_machine(APP, config=CONFIG)
    assert info.value.retryable
    assert len(script.requests) == 1
    assert fake_clock.sleeps == []


async def test_create_is_retried_when_the_connection_never_opened(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """A connect error proves the create never reached Fly: retry it."""
    script = Script(httpx.ConnectError("refused"), OK_MACHINE)
    await make_client(script).create_machine(APP, config=CONFIG)
    assert len(script.requests) == 2
    assert fake_clock.sleeps == [1.0]


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadError("connection reset by peer"), httpx.RemoteProtocolError("closed")],
)
async def test_get_is_retried_on_reset(
    make_client: MakeClient, fake_clock: FakeClock, failure: Exception
) -> None:
    """A GET whose connection was reset is repeated."""
    script = Script(failure, OK_MACHINE)
    assert (await make_client(script).get_machine(APP, MID)).id == MID
    assert fake_clock.sleeps == [1.0]


async def test_update_retries_only_with_current_version(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """An update guarded by current_version is repeated after a 503; an unguarded one is not."""
    guarded = Script((503, None), OK_MACHINE)
    await make_client(guarded).update_machine(APP, MID, config=CONFIG, current_version="v1")
    assert len(guarded.requests) == 2
    unguarded = Script((503, None), OK_MACHINE)
    with pytest.raises(e.ServerError):
        await make_client(unguarded).update_machine(APP, MID, config=CONFIG)
    assert len(unguarded.requests) == 1
    assert fake_clock.sleeps == [1.0]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (408, {"error": "machine failed to reach desired state"}),
        (409, {"error": "version mismatch"}),
        (400, {"error": "bad"}),
        (401, {"error": "Authenticate: token validation error"}),
        (404, {"error": "not found"}),
    ],
)
async def test_non_transient_errors_are_not_retried(
    make_client: MakeClient, fake_clock: FakeClock, status: int, body: object
) -> None:
    """Answers (wait timeout, conflicts, 4xx) are raised at once, even for idempotent calls."""
    script = Script((status, body), default=(200, {"ok": True}))
    with pytest.raises(e.FlyAPIError):
        await make_client(script).wait_machine(APP, MID, timeout=60)
    assert len(script.requests) == 1
    assert fake_clock.sleeps == []


async def test_start_and_acquire_are_not_retried_on_5xx(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """start/stop/acquire may have taken effect: one attempt."""
    script = Script(default=(500, None))
    client = make_client(script)
    for call in (
        client.start_machine(APP, MID),
        client.stop_machine(APP, MID),
        client.acquire_lease(APP, MID, ttl=15),
    ):
        with pytest.raises(e.ServerError):
            await call
    assert len(script.requests) == 3
    assert fake_clock.sleeps == []


async def test_release_destroy_and_refresh_are_retried(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """Release, destroy and refresh are harmless to repeat."""
    script = Script(
        (503, None),
        (200, {"status": "success", "data": {"ok": True}}),
        (503, None),
        (200, {"ok": True}),
        (503, None),
        (200, {"status": "success", "data": {"nonce": "n", "expires_at": 1}}),
    )
    client = make_client(script)
    await client.release_lease(APP, MID, nonce="n")
    await client.destroy_machine(APP, MID, force=True)
    await client.refresh_lease(APP, MID, nonce="n", ttl=15)
    assert len(script.requests) == 6
    assert fake_clock.sleeps == [1.0, 1.0, 1.0]


async def test_seeded_jitter_gives_a_reproducible_schedule(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """With a seeded Random the jittered delays are exactly the seeded draws."""
    script = Script(default=(500, None))
    with pytest.raises(e.ServerError):
        await make_client(script, rng=random.Random(2024)).get_machine(APP, MID)
    backoff = Backoff(base=1.0, cap=30.0, minimum=1.0)
    expected_rng = random.Random(2024)
    assert fake_clock.sleeps == [backoff.delay(n, expected_rng) for n in (1, 2, 3)]


async def test_retries_are_logged_at_debug_without_secrets(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Each retry logs endpoint, delay, status and request id at DEBUG."""
    caplog.set_level(logging.DEBUG, logger="controller")
    script = Script((503, None, {"fly-request-id": "REQ-1"}), OK_MACHINE)
    await make_client(script).get_machine(APP, MID)
    retry_logs = [r for r in caplog.records if r.name == "controller.flyapi.exchange"]
    assert len(retry_logs) == 1
    message = retry_logs[0].getMessage()
    assert "machines.get" in message
    assert "REQ-1" in message
    assert "503" in message
    assert TOKEN not in message


async def test_on_response_hook_sees_every_attempt(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """The metrics hook gets templated endpoint, status/outcome, duration and request id."""
    events: list[ResponseEvent] = []

    def slow_ok(request: httpx.Request) -> httpx.Response:
        fake_clock.advance(0.25)
        return httpx.Response(200, json=machine_json(), headers={"fly-request-id": "R2"})

    script = Script((502, None), httpx.ConnectError("x"), slow_ok)
    await make_client(script, on_response=events.append).get_machine(APP, MID)
    assert [(ev.endpoint, ev.status, ev.outcome, ev.attempt) for ev in events] == [
        ("machines.get", 502, "server_error", 1),
        ("machines.get", None, "connect_failed", 2),
        ("machines.get", 200, "ok", 3),
    ]
    assert events[2].duration == pytest.approx(0.25)
    assert events[2].request_id == "R2"
    assert events[0].method == "GET"


async def test_a_broken_hook_does_not_break_calls(make_client: MakeClient) -> None:
    """An exception in on_response is logged and swallowed."""

    def broken(event: ResponseEvent) -> None:
        raise RuntimeError("metrics down")

    client = make_client(Script(OK_MACHINE), on_response=broken)
    assert (await client.get_machine(APP, MID)).id == MID


async def test_from_settings_builds_a_working_client(fake_clock: FakeClock) -> None:
    """from_settings wires base URL, timeouts and limits, and closes its own http client."""
    script = Script(OK_MACHINE)
    settings = Settings(_env_file=None, api_url="http://127.0.0.1:4280", api_token=TOKEN)
    client = MachinesClient.from_settings(
        settings, clock=fake_clock, rng=random.Random(1), transport=httpx.MockTransport(script)
    )
    async with client:
        await client.get_machine(APP, MID)
    assert str(script.last.url).startswith("http://127.0.0.1:4280/v1/apps/")
    assert script.last.extensions["timeout"] == {
        "connect": 10.0,
        "read": 30.0,
        "write": 30.0,
        "pool": 30.0,
    }
    assert client.rate_limiter.limits == RateLimits()
    assert TOKEN not in repr(client)


async def test_from_settings_without_token_is_a_config_error(fake_clock: FakeClock) -> None:
    """No token, no client: a clear ConfigError naming both sources."""
    with pytest.raises(e.ConfigError, match="FLY_API_TOKEN"):
        MachinesClient.from_settings(
            Settings(_env_file=None), clock=fake_clock, rng=random.Random(1)
        )


async def test_client_needs_a_base_url_and_a_token(fake_clock: FakeClock) -> None:
    """An http client without base_url or an empty token is refused up front."""
    async with httpx.AsyncClient() as http:
        with pytest.raises(e.ConfigError, match="base_url"):
            MachinesClient(http, token=SecretStr(TOKEN), clock=fake_clock, rng=random.Random())
        with pytest.raises(e.ConfigError, match="empty"):
            MachinesClient(http, token=SecretStr(" "), clock=fake_clock, rng=random.Random())
