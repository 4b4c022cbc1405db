"""The bookkeeping of API calls in flight (issue 14): each step with its own deadline, the last
answer, and the first failure since; what the daemon's liveness reads."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from controller.core import errors as e
from controller.flyapi import ApiCalls, MachinesClient
from controller.flyapi.inflight import CallLedger, Silence
from controller.testing import FakeClock
from tests.flyapi.conftest import MakeClient
from tests.flyapi.fakes import Script, machine_json

APP = "acme-web"
MID = "3d8d413b29d089"


def test_an_attempt_within_its_deadline_is_waiting_and_past_it_has_failed() -> None:
    """A long-poll on the wire is waiting, not silence, until its own deadline; past it the
    API has failed to answer from that deadline on (even before the exchange says so)."""
    clock = FakeClock()
    ledger = CallLedger(clock)
    ledger.answered(0)
    start = clock.monotonic()
    ledger.attempt(1, deadline=76)
    clock.advance(75)
    calls = ledger.snapshot()
    assert calls.waiting(clock.monotonic())
    assert calls.silence(clock.monotonic()) is None
    clock.advance(2)
    calls = ledger.snapshot()
    assert calls.silence(clock.monotonic()) == Silence(since=start, failed_at=start + 76)
    assert calls.waiting(clock.monotonic()), "still on the wire: bounded by the silence rule"


def test_silence_starts_at_the_first_failed_attempt_and_an_answer_ends_it() -> None:
    """The silence begins when the first attempt that got no answer was sent (or at the last
    answer, if one came after that); later failures do not move it; any answer ends it."""
    clock = FakeClock()
    ledger = CallLedger(clock)
    ledger.attempt(1, deadline=40)
    clock.advance(5)
    ledger.answered(2)  # another call answered while call 1 was out
    answered_at = clock.monotonic()
    clock.advance(35)
    ledger.failed(1)
    first = Silence(since=answered_at, failed_at=clock.monotonic())
    assert ledger.snapshot().silence(clock.monotonic()) == first
    ledger.sleep(1, 2.0)
    assert ledger.snapshot().waiting(clock.monotonic())
    clock.advance(2)
    ledger.attempt(1, deadline=40)
    clock.advance(40)
    ledger.failed(1)
    assert ledger.snapshot().silence(clock.monotonic()) == first
    ledger.attempt(1, deadline=40)
    ledger.answered(1)
    calls = ledger.snapshot()
    assert calls.silence(clock.monotonic()) is None
    assert calls.last_answer == clock.monotonic()
    assert calls.steps == ()


def test_only_attempts_older_than_the_silence_are_pending() -> None:
    """A long-poll sent while the API answered counts until its own deadline; one sent after
    the API went silent does not (it would buy a dead API another minute)."""
    clock = FakeClock()
    ledger = CallLedger(clock)
    ledger.attempt(1, deadline=76)  # the long-poll, sent while the API answers
    ledger.answered(9)
    clock.advance(1)
    ledger.attempt(2, deadline=3)
    clock.advance(3)
    ledger.failed(2)
    ledger.attempt(3, deadline=76)  # a long-poll sent into the silence
    calls = ledger.snapshot()
    silence = calls.silence(clock.monotonic())
    assert silence is not None
    assert calls.older_pending(clock.monotonic(), silence.since)
    ledger.idle(1)  # the old long-poll ended (cancelled): only the new one is left
    calls = ledger.snapshot()
    assert not calls.older_pending(clock.monotonic(), silence.since)


def test_a_sleep_past_its_end_is_not_waiting() -> None:
    """A retry sleep covers until it is over; a sleep that never woke is not waiting."""
    clock = FakeClock()
    ledger = CallLedger(clock)
    ledger.sleep(1, 5.0)
    clock.advance(6)
    calls = ledger.snapshot()
    assert not calls.waiting(clock.monotonic())
    assert calls.silence(clock.monotonic()) is None
    assert calls.last_answer == -math.inf


async def test_the_client_books_failures_sleeps_and_answers(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """Through the client: a 503 starts a silence and a retry sleep; the retry's answer ends
    the silence; nothing is left in flight afterwards."""
    seen: list[ApiCalls] = []
    client: MachinesClient | None = None

    def look(request: httpx.Request) -> Any:
        assert client is not None
        seen.append(client.api_calls())
        return (200, machine_json())

    script = Script((503, {"error": "down"}), look)
    client = make_client(script)
    sent = fake_clock.monotonic()
    await client.get_machine(APP, MID)
    [during] = seen
    assert during.failure == Silence(since=sent, failed_at=sent)
    [retry] = during.steps
    assert retry.attempt
    [slept] = fake_clock.sleeps
    assert retry.started == sent + slept
    assert retry.due - retry.started == client._exchange.deadline()
    after = client.api_calls()
    assert after.failure is None
    assert after.steps == ()
    assert after.last_answer == fake_clock.monotonic()


async def test_a_call_that_is_not_retried_still_books_its_failure(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """A dropped connection on a create (never retried) is a failure: the API went silent."""
    script = Script(httpx.RemoteProtocolError("Server disconnected"))
    client = make_client(script)
    with pytest.raises(e.ConnectionDropped):
        await client.create_machine(APP, config={"image": "img"})
    calls = client.api_calls()
    assert calls.failure is not None
    assert calls.steps == ()
    assert client.calls_in_progress == 0


async def test_the_silence_grace_is_one_retry_sleep_and_one_request_deadline(
    make_client: MakeClient,
) -> None:
    """Not the longest request (a long-poll): the default deadline, plus the longest sleep the
    policy puts before a retry (its cap, or the floor after a 504)."""
    client = make_client(Script())
    policy = client.retry_policy
    deadline = client._exchange.deadline()
    expected = max(policy.transient.cap, policy.gateway_timeout_min) + deadline
    assert client.silence_grace() == expected
