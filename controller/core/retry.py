"""Retry policy, in one place: which API errors to retry, how long to wait, and how fast to go.

Two pieces, all pure (no I/O, no clock reads, no global randomness):

* :func:`classify`: exception -> :data:`Decision` (FLY_API.md 4 and DESIGN.md section 6 as code).
* :class:`Backoff` (capped exponential with full jitter from an injected :class:`random.Random`)
  and :class:`TokenBucket` (fed a ``monotonic`` callable).

Why we keep this small module instead of using stamina or tenacity: every wait here must run on
an injected clock and an injected, seeded random generator, so that tests on a fake clock take
zero wall time and can assert the exact sleep schedule; and the decision depends on what the
Fly API said (``Retry-After`` as a floor, 504 minimums, lease expiry parsed from the message),
which those libraries would only see as an opaque exception.  Their sleeping and time sources
are module globals that cannot be driven by a fake clock cleanly.  The I/O side (actually
sleeping, counting attempts) lives in :mod:`controller.flyapi.client` and the executor.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from controller.core import defaults as d
from controller.core import errors as e

__all__ = [
    "Backoff",
    "CheckThenRetry",
    "Cooldown",
    "Decision",
    "Drop",
    "GiveUp",
    "Replan",
    "Requeue",
    "RetryAfter",
    "RetryPolicy",
    "TokenBucket",
    "classify",
    "is_fatal",
    "lease_remaining",
]


# ----------------------------------------------------------------- backoff and rate


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter above a floor.

    ``ceiling(n) = min(cap, base * factor ** (n - 1))`` for attempt ``n >= 1``; ``delay(n)`` is
    uniform in ``[minimum, max(minimum, ceiling(n))]`` ("full jitter", but never below the
    floor), or exactly that upper bound when no ``rng`` is given.
    """

    base: float = 1.0
    cap: float = 30.0
    minimum: float = 0.0
    factor: float = 2.0

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay after the ``attempt``-th failure (1-based)."""
        exponent = min(max(attempt, 1) - 1, 64)  # bounded: 2**64 already exceeds any cap
        return min(self.cap, self.base * self.factor**exponent)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before the next attempt; jittered when ``rng`` is given."""
        high = max(self.minimum, self.ceiling(attempt))
        if rng is None:
            return high
        return rng.uniform(self.minimum, high)


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, holding at most ``burst``; starts full.

    ``monotonic`` is any never-decreasing seconds source (``clock.monotonic`` in production, a
    fake in tests).  :meth:`reserve` takes a token even when that puts the bucket into debt and
    returns how long the caller must wait, which serves waiters first come, first served without
    a polling loop.
    """

    __slots__ = ("_last", "_monotonic", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, monotonic: Callable[[], float]) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive finite number, not {rate!r}")
        if not burst >= 1 or not math.isfinite(burst):
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._monotonic = monotonic
        self._tokens = self.burst
        self._last = monotonic()

    def _refill(self) -> None:
        now = self._monotonic()
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while reservations are outstanding)."""
        self._refill()
        return self._tokens

    def try_take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are available now; never waits, never goes into debt."""
        self._refill()
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def delay_until_available(self, n: float = 1.0) -> float:
        """Seconds until ``n`` tokens will be available (0 if they are now); takes nothing."""
        self._refill()
        return max(0.0, (n - self._tokens) / self.rate)

    def reserve(self, n: float = 1.0) -> float:
        """Take ``n`` tokens now, possibly into debt; return the seconds to wait before use."""
        self._refill()
        self._tokens -= n
        return max(0.0, -self._tokens / self.rate)

    def is_full(self) -> bool:
        """True when the bucket is as good as new (safe to forget, to bound memory)."""
        self._refill()
        return self._tokens >= self.burst


# ----------------------------------------------------------------- policy and decisions


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Every number :func:`classify` uses (DESIGN.md section 6).  Seconds throughout."""

    max_attempts: int = d.RETRY_MAX_ATTEMPTS
    transient: Backoff = Backoff(
        base=d.RETRY_BASE_DELAY, cap=d.RETRY_MAX_DELAY, minimum=d.RETRY_MIN_DELAY
    )
    gateway_timeout_min: float = 10.0
    #: A ``Retry-After`` longer than this is not slept inside a call: the caller requeues.
    max_retry_after: float = d.RETRY_MAX_RETRY_AFTER
    capacity: Backoff = Backoff(base=d.CAPACITY_BACKOFF_BASE, cap=d.CAPACITY_BACKOFF_CAP)
    conflict: Backoff = Backoff(base=d.CONFLICT_BACKOFF_BASE, cap=d.CONFLICT_BACKOFF_CAP)
    max_conflict_retries: int = d.CONFLICT_RETRIES
    lease_requeue_default: float = d.CONFLICT_REQUEUE
    lease_requeue_min: float = 1.0
    lease_requeue_cap: float = 60.0


DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Do not retry.  ``fatal`` stops the whole run (auth); otherwise it fails this item."""

    reason: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """Repeat the identical request after ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class CheckThenRetry:
    """Outcome unknown (non-idempotent call, ambiguous failure): check whether it took effect
    (e.g. re-list by the launch tag) before trying again after ``after`` seconds."""

    after: float
    reason: str


@dataclass(frozen=True, slots=True)
class Requeue:
    """Not an error: put the item back and look again after ``after`` seconds (lease held)."""

    after: float
    reason: str


@dataclass(frozen=True, slots=True)
class Replan:
    """The machine moved under us (409 version): re-read it, re-plan, retry after ``after``."""

    after: float


@dataclass(frozen=True, slots=True)
class Cooldown:
    """A capacity or quota condition: pause this kind of work for ``after`` seconds and alert
    after repeated hits, while the rest of the work goes on.  ``condition`` is
    ``"capacity"`` or ``"quota"``."""

    after: float
    condition: str


@dataclass(frozen=True, slots=True)
class Drop:
    """The target is gone (404): drop the action; the next pass re-lists."""

    reason: str


Decision = GiveUp | RetryAfter | CheckThenRetry | Requeue | Replan | Cooldown | Drop


def classify(
    exc: BaseException,
    *,
    attempt: int = 1,
    idempotent: bool = True,
    now: float | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    rng: random.Random | None = None,
) -> Decision:
    """Decide what to do after ``exc``, the failure of the ``attempt``-th try (1-based).

    ``idempotent`` says whether repeating the identical request is harmless; when it is not,
    only failures where Fly provably did nothing (connect errors, 429) are retried, and other
    transient failures become :class:`CheckThenRetry`.  ``now`` (unix seconds) turns a lease
    holder's ``expires_at`` into a delay; ``rng`` jitters backoffs (no jitter without it).
    """
    if not isinstance(exc, e.FlyAPIError):
        return GiveUp(reason=f"unexpected {type(exc).__name__}")
    if isinstance(exc, e.Unauthorized | e.Forbidden):
        return GiveUp(reason=exc.error_class, fatal=True)
    if isinstance(exc, e.QuotaExceeded):
        return Cooldown(after=policy.capacity.delay(attempt), condition="quota")
    if isinstance(exc, e.InsufficientCapacity):
        return Cooldown(after=policy.capacity.delay(attempt), condition="capacity")
    if isinstance(exc, e.LeaseHeld):
        return Requeue(after=_lease_requeue_delay(exc, now, policy), reason=exc.error_class)
    if isinstance(exc, e.VersionConflict):
        if attempt > policy.max_conflict_retries:
            return Requeue(after=policy.lease_requeue_default, reason=exc.error_class)
        return Replan(after=policy.conflict.delay(attempt, rng))
    if isinstance(exc, e.LeaseLost):
        return Requeue(after=policy.lease_requeue_min, reason=exc.error_class)
    if isinstance(exc, e.NotFound):
        return Drop(reason=exc.error_class)
    if isinstance(exc, e.WaitTimeout):
        return RetryAfter(seconds=0.0)  # the answer "not yet": the caller loops to its deadline
    if exc.retryable:
        return _classify_transient(exc, attempt, idempotent, policy, rng)
    return GiveUp(reason=exc.error_class)


def _classify_transient(
    exc: e.FlyAPIError,
    attempt: int,
    idempotent: bool,
    policy: RetryPolicy,
    rng: random.Random | None,
) -> Decision:
    minimum = policy.gateway_timeout_min if isinstance(exc, e.GatewayTimeout) else 0.0
    delay = max(minimum, policy.transient.delay(attempt, rng))
    if isinstance(exc, e.RateLimited):
        # Retry-After is a floor: never wait less than the server asked, nor less than backoff.
        hint = exc.retry_after if exc.retry_after is not None else 0.0
        delay = max(delay, hint)
        if delay > policy.max_retry_after or attempt >= policy.max_attempts:
            return Requeue(after=delay, reason=exc.error_class)
        return RetryAfter(seconds=delay)
    if attempt >= policy.max_attempts:
        return GiveUp(reason=f"{exc.error_class} after {attempt} attempts")
    not_sent = isinstance(exc, e.TransportFailure) and not exc.request_sent
    if idempotent or not_sent:
        return RetryAfter(seconds=delay)
    return CheckThenRetry(after=delay, reason=exc.error_class)


def lease_remaining(exc: e.LeaseHeld, now: float | None) -> float | None:
    """Seconds until the holder's lease in ``exc`` expires (negative once past), at ``now``
    (unix seconds); None when either is unknown.  Every "wait for that lease" delay starts
    here and applies its own bounds."""
    if exc.expires_at is None or now is None:
        return None
    return exc.expires_at.timestamp() - now


def _lease_requeue_delay(exc: e.LeaseHeld, now: float | None, policy: RetryPolicy) -> float:
    remaining = lease_remaining(exc, now)
    if remaining is None:
        return policy.lease_requeue_default
    return min(policy.lease_requeue_cap, max(policy.lease_requeue_min, remaining))


def is_fatal(exc: BaseException) -> bool:
    """Whether ``exc`` stops the whole run (:class:`GiveUp` with ``fatal``: auth)."""
    decision = classify(exc)
    return isinstance(decision, GiveUp) and decision.fatal
