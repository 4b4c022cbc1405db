"""Backoff maths with a seeded rng, and the token bucket on a fake monotonic clock."""

from __future__ import annotations

import random

import pytest

from controller.core.retry import Backoff, TokenBucket


class FakeMonotonic:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_ceiling_doubles_and_caps() -> None:
    """The ceiling is base * 2**(n-1), capped."""
    backoff = Backoff(base=1.0, cap=10.0)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_backoff_huge_attempts_do_not_overflow() -> None:
    """Absurd attempt numbers still give the cap, not an OverflowError."""
    assert Backoff(base=1.0, cap=5.0).delay(10_000) == 5.0
    assert Backoff(base=1.0, cap=5.0).ceiling(0) == 1.0


def test_backoff_without_rng_is_the_upper_bound() -> None:
    """No rng means no jitter: the delay is max(minimum, ceiling)."""
    backoff = Backoff(base=1.0, cap=30.0, minimum=10.0)
    assert [backoff.delay(n) for n in (1, 4, 5, 6)] == [10.0, 10.0, 16.0, 30.0]


def test_backoff_full_jitter_is_reproducible_with_a_seed() -> None:
    """A seeded rng gives the same schedule twice, each value within [minimum, ceiling]."""
    backoff = Backoff(base=1.0, cap=30.0, minimum=1.0)
    first = [backoff.delay(n, random.Random(1234)) for n in range(1, 8)]
    second = [backoff.delay(n, random.Random(1234)) for n in range(1, 8)]
    assert first == second
    for n, value in enumerate(first, start=1):
        assert 1.0 <= value <= max(1.0, backoff.ceiling(n))


def test_backoff_jitter_matches_uniform_draws() -> None:
    """Jitter is exactly rng.uniform(minimum, ceiling)."""
    expected = random.Random(9).uniform(1.0, 8.0)
    assert Backoff(base=1.0, cap=30.0, minimum=1.0).delay(4, random.Random(9)) == expected


def test_bucket_starts_full_and_refills_at_rate() -> None:
    """Burst tokens are available at once, then one per 1/rate seconds."""
    clock = FakeMonotonic()
    bucket = TokenBucket(rate=1.0, burst=3, monotonic=clock)
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.delay_until_available() == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.delay_until_available() == pytest.approx(0.5)
    assert not bucket.try_take()
    clock.now += 0.5
    assert bucket.try_take()


def test_bucket_never_exceeds_burst() -> None:
    """A long idle period refills to burst, not beyond."""
    clock = FakeMonotonic()
    bucket = TokenBucket(rate=5.0, burst=10, monotonic=clock)
    for _ in range(10):
        assert bucket.try_take()
    clock.now += 3600
    assert bucket.tokens == 10.0
    assert bucket.is_full()


def test_bucket_reserve_queues_waiters_in_order() -> None:
    """Reservations go into debt and hand out increasing waits: 0, 0, 0, 1, 2."""
    clock = FakeMonotonic()
    bucket = TokenBucket(rate=1.0, burst=3, monotonic=clock)
    assert [bucket.reserve() for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert not bucket.is_full()
    clock.now += 2.0
    assert bucket.tokens == pytest.approx(0.0)


def test_bucket_ignores_a_clock_that_goes_backwards() -> None:
    """A backwards step neither adds nor removes tokens."""
    clock = FakeMonotonic()
    bucket = TokenBucket(rate=1.0, burst=1, monotonic=clock)
    assert bucket.try_take()
    clock.now -= 50
    assert bucket.delay_until_available() == pytest.approx(1.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0.5)])
def test_bucket_rejects_nonsense_parameters(rate: float, burst: float) -> None:
    """Zero, negative or infinite rates and sub-1 bursts are refused."""
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst, monotonic=FakeMonotonic())
