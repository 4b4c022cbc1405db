"""Alerts: fire after N, at once for auth and bad state, dedupe, resolve, remind, and reach a
webhook receiver on loopback without ever blocking the caller."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.clock import SystemClock
from controller.emulator import serve_in_thread
from controller.observability.alerts import (
    AlertKey,
    Alerts,
    Condition,
    GaugeSink,
    LogSink,
    Notice,
    Observation,
    WebhookSink,
)
from controller.observability.metrics import Metrics
from controller.testing import FakeClock
from tests.daemon.support import RecordingSink

APP = "web"
CAPACITY = AlertKey(APP, "web-iad-0", Condition.CAPACITY)
AUTH = AlertKey(APP, "-", Condition.AUTH)
BAD_FILE = AlertKey(APP, "web.yaml", Condition.BAD_DESIRED_STATE)
WEBHOOK_SECRET = "T000/B000/very-secret-webhook-part"


def in_app(key: AlertKey) -> bool:
    """The scope of one pass of APP."""
    return key.app == APP


def alerts_with(sink: RecordingSink, clock: FakeClock, **kwargs: Any) -> Alerts:
    """An Alerts manager with ``sink`` and threshold 3."""
    return Alerts(clock=clock, sinks=[sink], **{"threshold": 3, **kwargs})


def test_a_condition_fires_after_three_consecutive_passes(fake_clock: FakeClock) -> None:
    """Two passes with capacity errors stay quiet; the third fires once."""
    sink = RecordingSink()
    alerts = alerts_with(sink, fake_clock)
    for _ in range(2):
        alerts.observe([Observation(CAPACITY, "no capacity in iad")], scope=in_app)
    assert sink.notices == []
    assert [a.key for a in alerts.pending()] == [CAPACITY]
    alerts.observe([Observation(CAPACITY, "no capacity in iad")], scope=in_app)
    assert sink.kinds() == ["firing"]
    assert sink.notices[0].count == 3
    alerts.observe([Observation(CAPACITY, "no capacity in iad")], scope=in_app)
    assert sink.kinds() == ["firing"], "firing once, not on every pass"


def test_a_success_in_between_resets_the_count(fake_clock: FakeClock) -> None:
    """Failures must be consecutive: a clean pass clears the pending count silently."""
    sink = RecordingSink()
    alerts = alerts_with(sink, fake_clock)
    for _ in range(2):
        alerts.observe([Observation(CAPACITY, "no capacity")], scope=in_app)
    alerts.observe([], scope=in_app)
    for _ in range(2):
        alerts.observe([Observation(CAPACITY, "no capacity")], scope=in_app)
    assert sink.notices == []


@pytest.mark.parametrize("key", [AUTH, BAD_FILE])
def test_auth_and_bad_desired_state_fire_at_once(fake_clock: FakeClock, key: AlertKey) -> None:
    """Auth failures and broken files alert on the first observation."""
    sink = RecordingSink()
    alerts = alerts_with(sink, fake_clock)
    alerts.observe([Observation(key, "401 unauthorized")], scope=in_app)
    assert sink.kinds() == ["firing"]


def test_dedupe_is_on_the_key_never_the_message(fake_clock: FakeClock) -> None:
    """A changing message (a new request id, another wording) keeps one alert."""
    sink = RecordingSink()
    alerts = alerts_with(sink, fake_clock)
    for n in range(6):
        alerts.observe([Observation(CAPACITY, f"no capacity (req {n})")], scope=in_app)
    assert sink.kinds() == ["firing"]
    assert alerts.firing()[0].message == "no capacity (req 5)"
    other_slot = AlertKey(APP, "web-iad-1", Condition.CAPACITY)
    for _ in range(3):
        alerts.observe([Observation(CAPACITY, "x"), Observation(other_slot, "x")], scope=in_app)
    assert [a.key for a in alerts.firing()] == [CAPACITY, other_slot]


def test_a_resolved_condition_sends_a_notice(fake_clock: FakeClock) -> None:
    """A firing alert whose key the next pass does not see resolves with a notice."""
    sink = RecordingSink()
    alerts = alerts_with(sink, fake_clock)
    alerts.observe([Observation(AUTH, "401")], scope=in_app)
    alerts.observe([], scope=lambda k: k.app == "other-app")
    assert sink.kinds() == ["firing"], "out of scope: untouched"
    alerts.observe([], scope=in_app)
    assert sink.kinds() == ["firing", "resolved"]
    assert alerts.firing() == []
    assert "RESOLVED" in sink.notices[-1].text


def test_reminders_follow_the_renotify_interval(fake_clock: FakeClock) -> None:
    """A firing alert is re-notified every renotify_interval, not more often."""
    sink = RecordingSink()
    alerts = alerts_with(sink, fake_clock, renotify_interval=600)
    alerts.observe([Observation(AUTH, "401")], scope=in_app)
    fake_clock.advance(599)
    alerts.remind()
    assert sink.kinds() == ["firing"]
    fake_clock.advance(1)
    alerts.remind()
    fake_clock.advance(300)
    alerts.remind()
    assert sink.kinds() == ["firing", "reminder"]
    fake_clock.advance(300)
    alerts.remind()
    assert sink.kinds() == ["firing", "reminder", "reminder"]


def test_gauge_and_log_sinks(fake_clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """alerts_firing{app,condition} follows firing/resolved; the log sink writes ERROR events."""
    metrics = Metrics()
    alerts = Alerts(clock=fake_clock, sinks=[GaugeSink(metrics.set_alerts), LogSink()])
    gauge = "machine_reconciler_alerts_firing"
    assert metrics.value(gauge, app=APP, condition="auth") is None, "no alert yet: no series"
    with caplog.at_level(logging.INFO, logger="controller.alerts"):
        alerts.observe([Observation(AUTH, "401 from the API")], scope=in_app)
        assert metrics.value(gauge, app=APP, condition="auth") == 1
        alerts.observe([], scope=in_app)
    assert metrics.value(gauge, app=APP, condition="auth") == 0
    firing, resolved = caplog.records
    assert firing.levelno == logging.ERROR
    assert getattr(firing, "condition", None) == "auth"
    assert "401 from the API" in firing.getMessage()
    assert resolved.levelno == logging.WARNING


def test_a_failing_sink_does_not_silence_the_others(fake_clock: FakeClock) -> None:
    """An exception in one sink is logged; the next sink still gets the notice."""

    class Broken:
        def notify(self, notice: Notice) -> None:
            raise RuntimeError("boom")

    sink = RecordingSink()
    alerts = Alerts(clock=fake_clock, sinks=[Broken(), sink])
    alerts.observe([Observation(AUTH, "401")], scope=in_app)
    assert sink.kinds() == ["firing"]


def test_notice_json_is_slack_compatible(fake_clock: FakeClock) -> None:
    """The webhook body has a text field plus structured fields."""
    notice = Notice("firing", CAPACITY, "no capacity in iad", 3, fake_clock.now(), "req-1")
    body = notice.to_json()
    assert body["text"].startswith(":rotating_light: [FIRING] capacity web/web-iad-0")
    assert body["status"] == "firing"
    assert (body["condition"], body["app"], body["subject"]) == ("capacity", "web", "web-iad-0")
    assert body["count"] == 3
    assert body["request_id"] == "req-1"
    assert body["since"].endswith("Z")


# ------------------------------------------------------------------------------ webhook


@dataclass
class Receiver:
    """A loopback webhook receiver that records bodies and fails the first ``fail`` posts."""

    fail: int = 0
    delay: float = 0.0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.json()
            with self.lock:
                self.attempts += 1
                failing = self.attempts <= self.fail
            if self.delay:
                await anyio.sleep(self.delay)
            if failing:
                return JSONResponse({"error": "try later"}, 503)
            with self.lock:
                self.bodies.append(body)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route(f"/services/{WEBHOOK_SECRET}", hook, methods=["POST"])])


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    """A webhook receiver served on a free loopback port; yields (receiver, url)."""
    rec = Receiver()
    with serve_in_thread(rec.app()) as base:
        yield rec, f"{base}/services/{WEBHOOK_SECRET}"


async def until(condition: Any, seconds: float = 10.0) -> None:
    """Wait (wall time, bounded) until ``condition()``."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - the receiver runs in another thread
            await anyio.sleep(0.01)


async def test_webhook_receives_firing_reminder_and_resolved(
    receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Through a real loopback receiver: fire, re-notify after the interval, resolve."""
    rec, url = receiver
    clock = FakeClock()
    async with httpx.AsyncClient() as http:
        hook = WebhookSink(SecretStr(url), http=http, clock=clock, timeout=2.0)
        alerts = Alerts(clock=clock, sinks=[hook], threshold=3, renotify_interval=60)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hook.run)
            for _ in range(3):
                alerts.observe([Observation(CAPACITY, "no capacity in iad")], scope=in_app)
            await until(lambda: len(rec.bodies) == 1)
            clock.advance(61)
            alerts.remind()
            await until(lambda: len(rec.bodies) == 2)
            alerts.observe([], scope=in_app)
            await until(lambda: hook.delivered == 3)
            tg.cancel_scope.cancel()
    assert [b["status"] for b in rec.bodies] == ["firing", "reminder", "resolved"]
    assert all(b["condition"] == "capacity" and b["app"] == "web" for b in rec.bodies)
    assert "[FIRING]" in rec.bodies[0]["text"]
    assert hook.delivered == 3
    assert WEBHOOK_SECRET not in caplog.text


async def test_webhook_retries_then_delivers(receiver: tuple[Receiver, str]) -> None:
    """A 503 from the receiver is retried (on the injected clock) and then delivered."""
    rec, url = receiver
    rec.fail = 2
    clock = FakeClock()
    async with httpx.AsyncClient() as http:
        hook = WebhookSink(SecretStr(url), http=http, clock=clock, attempts=3, retry_delay=2.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hook.run)
            hook.notify(Notice("firing", AUTH, "401", 1, clock.now()))
            await until(lambda: len(rec.bodies) == 1)
            tg.cancel_scope.cancel()
    assert rec.attempts == 3
    assert clock.sleeps == [2.0, 4.0]


async def test_webhook_gives_up_without_logging_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unreachable webhook: bounded attempts, one warning that never names the URL."""
    clock = FakeClock()
    url = f"http://127.0.0.1:9/services/{WEBHOOK_SECRET}"  # discard port: connection refused
    async with httpx.AsyncClient() as http:
        hook = WebhookSink(SecretStr(url), http=http, clock=clock, attempts=2, timeout=1.0)
        with caplog.at_level(logging.WARNING, logger="controller.alerts"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(hook.run)
                hook.notify(Notice("firing", AUTH, "401", 1, clock.now()))
                await until(lambda: hook.failed == 1)
                tg.cancel_scope.cancel()
    assert "failed after 2 attempts: ConnectError" in caplog.text
    assert WEBHOOK_SECRET not in caplog.text
    assert "127.0.0.1:9" not in caplog.text


async def test_webhook_never_blocks_the_caller(receiver: tuple[Receiver, str]) -> None:
    """notify() returns at once even when the receiver is slow; a full queue drops."""
    rec, url = receiver
    rec.delay = 0.5
    clock = SystemClock()
    async with httpx.AsyncClient() as http:
        hook = WebhookSink(SecretStr(url), http=http, clock=clock, max_queued=3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(hook.run)
            with anyio.fail_after(0.2):  # five notices against a 0.5 s receiver
                for n in range(5):
                    hook.notify(Notice("firing", AUTH, f"401 #{n}", 1, clock.now()))
                    await anyio.lowlevel.checkpoint()
            assert hook.dropped >= 1
            assert hook.queued <= 3
            tg.cancel_scope.cancel()
