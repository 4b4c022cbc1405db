"""classify(): the single retry decision for every error condition (DESIGN.md section 6)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from controller.core import errors as e
from controller.core.retry import (
    Backoff,
    CheckThenRetry,
    Cooldown,
    Drop,
    GiveUp,
    Replan,
    Requeue,
    RetryAfter,
    RetryPolicy,
    classify,
)

NOW = datetime(2026, 5, 14, 10, 41, 0, tzinfo=UTC).timestamp()


def _approx(seconds: float) -> float:
    """``pytest.approx`` in a float field, so a decision compares equal up to rounding."""
    return cast(float, pytest.approx(seconds))


def make(cls: type[e.FlyAPIError], status: int | None = None, **kwargs: Any) -> e.FlyAPIError:
    """Build an API error with a plausible method and path."""
    return cls(method="POST", path="/v1/apps/a/machines/m", status=status, **kwargs)


@pytest.mark.parametrize("cls", [e.Unauthorized, e.Forbidden])
def test_auth_errors_are_fatal(cls: type[e.FlyAPIError]) -> None:
    """401 and non-quota 403 stop the whole run."""
    assert classify(make(cls, 401)) == GiveUp(reason=cls.error_class, fatal=True)


@pytest.mark.parametrize(
    ("cls", "condition"), [(e.InsufficientCapacity, "capacity"), (e.QuotaExceeded, "quota")]
)
def test_capacity_and_quota_cool_down_30s_doubling_to_15min(
    cls: type[e.FlyAPIError], condition: str
) -> None:
    """Capacity and quota back off 30 s, 60 s, 120 s ... capped at 900 s."""
    delays = [classify(make(cls, 409), attempt=n) for n in (1, 2, 3, 5, 6, 40)]
    assert delays == [
        Cooldown(after=30.0, condition=condition),
        Cooldown(after=60.0, condition=condition),
        Cooldown(after=120.0, condition=condition),
        Cooldown(after=480.0, condition=condition),
        Cooldown(after=900.0, condition=condition),
        Cooldown(after=900.0, condition=condition),
    ]


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [(12.0, 12.0), (0.2, 1.0), (-30.0, 1.0), (3600.0, 60.0)],
)
def test_lease_held_requeues_until_expiry_capped(expires_in: float, expected: float) -> None:
    """A held lease requeues until its expiry, at least 1 s and at most 60 s."""
    expires = datetime.fromtimestamp(NOW + expires_in, tz=UTC)
    exc = e.LeaseHeld(holder="x", expires_at=expires, method="POST", path="/p", status=409)
    assert classify(exc, now=NOW) == Requeue(after=_approx(expected), reason="lease_held")


def test_lease_held_without_expiry_uses_default() -> None:
    """Unknown expiry (or no clock reading) requeues after the default 5 s."""
    exc = e.LeaseHeld(method="POST", path="/p", status=409)
    assert classify(exc, now=NOW) == Requeue(after=5.0, reason="lease_held")
    expiring = e.LeaseHeld(
        expires_at=datetime.fromtimestamp(NOW + 20, tz=UTC), method="POST", path="/p"
    )
    assert classify(expiring) == Requeue(after=5.0, reason="lease_held")


def test_version_conflict_replans_with_backoff_then_requeues() -> None:
    """409 version: re-plan after 100 ms doubling, then requeue after max_conflict_retries."""
    exc = make(e.VersionConflict, 409)
    assert classify(exc, attempt=1) == Replan(after=_approx(0.1))
    assert classify(exc, attempt=3) == Replan(after=_approx(0.4))
    assert classify(exc, attempt=6) == Requeue(after=5.0, reason="version_conflict")


def test_version_conflict_jitter_stays_in_bounds() -> None:
    """With an rng the conflict backoff is jittered within [0, ceiling]."""
    rng = random.Random(3)
    for attempt in range(1, 6):
        decision = classify(make(e.VersionConflict, 409), attempt=attempt, rng=rng)
        assert isinstance(decision, Replan)
        assert 0.0 <= decision.after <= min(5.0, 0.1 * 2 ** (attempt - 1))


@pytest.mark.parametrize("cls", [e.NotFound, e.LeaseNotFound])
def test_not_found_drops_the_action(cls: type[e.FlyAPIError]) -> None:
    """404 drops the action; the next pass re-lists."""
    assert classify(make(cls, 404)) == Drop(reason=cls.error_class)


def test_wait_timeout_polls_again_immediately() -> None:
    """408 from /wait is "not yet": loop at once until the caller's deadline."""
    assert classify(make(e.WaitTimeout, 408)) == RetryAfter(seconds=0.0)


def test_lease_lost_requeues() -> None:
    """A lapsed lease stops work on the machine and requeues it quickly."""
    assert classify(make(e.LeaseLost, 200)) == Requeue(after=1.0, reason="lease_lost")


@pytest.mark.parametrize(
    "cls",
    [
        e.VolumeInUse,
        e.PreconditionFailed,
        e.BadRequest,
        e.NameTaken,
        e.InvalidResponse,
        e.UnexpectedStatus,
    ],
)
def test_permanent_errors_give_up_without_being_fatal(cls: type[e.FlyAPIError]) -> None:
    """412/400/422 and unreadable answers are permanent for this spec, not for the run."""
    assert classify(make(cls, 400)) == GiveUp(reason=cls.error_class, fatal=False)


def test_429_retry_after_is_a_floor_over_backoff() -> None:
    """A longer Retry-After wins; a shorter one never undercuts the computed backoff."""
    long = make(e.RateLimited, 429, retry_after=7.0)
    short = make(e.RateLimited, 429, retry_after=0.2)
    none = make(e.RateLimited, 429)
    assert classify(long, attempt=1) == RetryAfter(seconds=7.0)
    assert classify(short, attempt=1) == RetryAfter(seconds=1.0)
    assert classify(short, attempt=3) == RetryAfter(seconds=4.0)
    assert classify(none, attempt=2) == RetryAfter(seconds=2.0)


def test_429_for_non_idempotent_calls_still_retries() -> None:
    """Fly did nothing on 429, so even a create may be repeated."""
    assert classify(make(e.RateLimited, 429), idempotent=False) == RetryAfter(seconds=1.0)


def test_429_with_huge_retry_after_requeues_instead_of_sleeping() -> None:
    """A Retry-After above max_retry_after is not slept inside a call: requeue the item."""
    exc = make(e.RateLimited, 429, retry_after=600.0)
    assert classify(exc) == Requeue(after=600.0, reason="rate_limited")


def test_429_exhausted_requeues() -> None:
    """After max_attempts a 429 requeues rather than alerting."""
    assert classify(make(e.RateLimited, 429), attempt=4) == Requeue(
        after=8.0, reason="rate_limited"
    )


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_retries_idempotent_calls_from_1s(status: int) -> None:
    """5xx on an idempotent call retries after 1 s, 2 s, 4 s, then gives up."""
    exc = make(e.ServerError, status)
    assert [classify(exc, attempt=n) for n in (1, 2, 3)] == [
        RetryAfter(seconds=1.0),
        RetryAfter(seconds=2.0),
        RetryAfter(seconds=4.0),
    ]
    assert classify(exc, attempt=4) == GiveUp(reason="server_error after 4 attempts")


def test_504_waits_at_least_10s() -> None:
    """504 retries never wait less than 10 s."""
    exc = make(e.GatewayTimeout, 504)
    assert classify(exc, attempt=1) == RetryAfter(seconds=10.0)
    assert classify(exc, attempt=3, rng=random.Random(1)) == RetryAfter(seconds=10.0)


@pytest.mark.parametrize(
    "cls",
    [e.ServerError, e.GatewayTimeout, e.RequestTimeout, e.ConnectionDropped, e.RequestTimeout408],
)
def test_ambiguous_failures_of_non_idempotent_calls_check_first(cls: type[e.FlyAPIError]) -> None:
    """5xx/408/timeouts/resets on a create: check whether it happened before retrying."""
    decision = classify(make(cls, 500), idempotent=False)
    assert isinstance(decision, CheckThenRetry)
    assert decision.reason == cls.error_class
    assert decision.after >= 1.0


def test_connect_failure_retries_even_non_idempotent_calls() -> None:
    """A request that never left may be repeated whatever it was."""
    assert classify(make(e.ConnectFailed), idempotent=False) == RetryAfter(seconds=1.0)


@pytest.mark.parametrize("cls", [e.RequestTimeout, e.ConnectionDropped, e.RequestTimeout408])
def test_timeouts_and_resets_retry_idempotent_calls(cls: type[e.FlyAPIError]) -> None:
    """Read timeouts, resets and non-wait 408s retry idempotent calls."""
    assert classify(make(cls), attempt=2) == RetryAfter(seconds=2.0)


def test_jittered_transient_delay_is_between_min_and_ceiling() -> None:
    """Full jitter stays within [1 s, ceiling] for many seeded draws."""
    rng = random.Random(42)
    for attempt in (1, 2, 3):
        for _ in range(50):
            decision = classify(make(e.ServerError, 500), attempt=attempt, rng=rng)
            assert isinstance(decision, RetryAfter)
            assert 1.0 <= decision.seconds <= max(1.0, 2.0 ** (attempt - 1))


def test_non_api_exceptions_give_up() -> None:
    """Anything outside the API tree is not retried."""
    assert classify(ValueError("boom")) == GiveUp(reason="unexpected ValueError")


def test_policy_is_configurable() -> None:
    """A custom policy changes the attempt budget and the backoff."""
    policy = RetryPolicy(max_attempts=2, transient=Backoff(base=3.0, cap=3.0, minimum=1.0))
    exc = make(e.ServerError, 500)
    assert classify(exc, attempt=1, policy=policy) == RetryAfter(seconds=3.0)
    assert isinstance(classify(exc, attempt=2, policy=policy), GiveUp)


def test_retryable_flags_match_the_design_table() -> None:
    """Only transport, 408-elsewhere, 429 and 5xx are marked retryable."""
    retryable = {
        cls.__name__
        for cls in vars(e).values()
        if isinstance(cls, type) and issubclass(cls, e.FlyAPIError) and cls.retryable
    }
    assert retryable == {
        "TransportFailure",
        "ConnectFailed",
        "RequestTimeout",
        "ConnectionDropped",
        "RequestTimeout408",
        "RateLimited",
        "ServerError",
        "GatewayTimeout",
    }
