"""Client-side rate limiting that follows Fly's documented limits (FLY_API.md 5).

Fly limits each *action* per *machine* (or per app for app-scoped actions) to 1 req/s with a
burst of 3, and Get Machine to 5 req/s with a burst of 10.  :class:`RateLimiter` keeps one
:class:`~controller.core.retry.TokenBucket` per (scope, bucket name) plus one global bucket (our own
cap, protecting the shared token), and makes callers wait on the injected clock.  Buckets that
have refilled completely are forgotten, so memory stays bounded however many machines we see.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.clock import Clock
from controller.core import defaults as d
from controller.core.retry import TokenBucket
from controller.settings import Settings

__all__ = ["RateLimiter", "RateLimits"]

#: Forget full buckets once this many are tracked (a full bucket is identical to a new one).
_PRUNE_AT = 4096


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Rates in requests per second, bursts in requests.  ``enabled=False`` turns pacing off."""

    action_rate: float = d.ACTION_RATE
    action_burst: int = d.ACTION_BURST
    read_rate: float = d.READ_RATE
    read_burst: int = d.READ_BURST
    global_rate: float = d.GLOBAL_RATE
    global_burst: int = d.GLOBAL_BURST
    enabled: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        """The limits configured in ``settings``."""
        return cls(
            action_rate=settings.machine_action_rate,
            action_burst=settings.machine_action_burst,
            read_rate=settings.get_machine_rate,
            read_burst=settings.get_machine_burst,
            global_rate=settings.global_rate,
            global_burst=settings.global_burst,
        )

    @classmethod
    def disabled(cls) -> RateLimits:
        """No client-side pacing (tests of other behaviour; Fly still answers 429)."""
        return cls(enabled=False)


class RateLimiter:
    """Waits (on ``clock.sleep``) until a request may go out.

    ``kind`` is ``"read"`` (get machine and other reads: 5/s burst 10) or ``"action"``
    (everything else: 1/s burst 3).  ``key`` is ``(scope, endpoint)``, e.g.
    ``("my-app/3d8d413b29d089", "machines.update")``.  Reservations are taken in arrival order,
    so concurrent callers queue fairly and each sleeps at most once per bucket.
    """

    def __init__(self, limits: RateLimits, clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._global = TokenBucket(limits.global_rate, limits.global_burst, clock.monotonic)

    @property
    def limits(self) -> RateLimits:
        """The configured limits."""
        return self._limits

    def _bucket(self, key: tuple[str, str], kind: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_AT:
                self._prune()
            if kind == "read":
                rate, burst = self._limits.read_rate, self._limits.read_burst
            else:
                rate, burst = self._limits.action_rate, self._limits.action_burst
            bucket = TokenBucket(rate, burst, self._clock.monotonic)
            self._buckets[key] = bucket
        return bucket

    def _prune(self) -> None:
        for key in [k for k, b in self._buckets.items() if b.is_full()]:
            del self._buckets[key]

    def reserve(self, key: tuple[str, str], kind: str) -> float:
        """Take a token from the key's bucket and the global one; seconds to wait before sending.

        The delay is the longer of the two waits.
        """
        if not self._limits.enabled:
            return 0.0
        return max(self._bucket(key, kind).reserve(), self._global.reserve())

    async def acquire(self, key: tuple[str, str], kind: str) -> float:
        """Wait until a request for ``key`` may be sent; returns the seconds waited."""
        delay = self.reserve(key, kind)
        if delay > 0:
            await self._clock.sleep(delay)
        return delay

    def tracked(self) -> int:
        """How many per-key buckets are currently kept (for tests and metrics)."""
        return len(self._buckets)
