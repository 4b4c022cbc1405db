"""The time port: one seam through which every wall-clock read and sleep passes.

Retry, backoff, lease-TTL and scheduling code takes a :class:`Clock` instead of calling
``time``/``anyio.sleep`` directly, so tests can substitute the virtual clocks of
:mod:`controller.testing` and run hours of backoff in zero wall time, deterministically.  The pure
core (planner, retry maths) never imports this module: it receives ``now: float`` values instead.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio


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
