"""The time port: one seam through which every wall-clock read and sleep passes.

Retry, backoff, lease-TTL and scheduling code takes a :class:`Clock` instead of calling
``time``/``anyio.sleep`` directly, so tests can substitute :class:`FakeClock` and run hours of
backoff in zero wall time, deterministically.  The pure core (planner, retry maths) never imports
this module: it receives ``now: float`` values instead.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel


@runtime_checkable
class Clock(Protocol):
    """Monotonic time for durations, wall time for API timestamps, and an async sleep."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for TTLs, deadlines, buckets)."""
        ...

    def now(self) -> float:
        """Unix wall time in seconds (for timestamps the API shows, such as lease expiry)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic``, ``time.time`` and ``anyio.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when someone sleeps on it or calls :meth:`advance`.

    ``sleep`` advances virtual time by the requested amount and yields once to the event loop,
    so retry and backoff loops run instantly while tests can still assert the exact virtual
    time that elapsed (``clock.monotonic() == 7.5``).  ``sleeps`` records every requested
    delay, which is the simplest way to assert a backoff schedule.
    """

    def __init__(self, start: float = 1_000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._mono = start
        self._wall_offset = wall_start - start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> float:
        return self._mono + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward without sleeping (e.g. to expire a lease)."""
        if seconds < 0:
            raise ValueError("a clock never goes backwards")
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        delay = max(0.0, seconds)
        self.sleeps.append(delay)
        self._mono += delay
        await anyio.lowlevel.checkpoint()
