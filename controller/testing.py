"""Virtual clocks for tests, shipped with the package so users' tests can use them too.

* :class:`FakeClock` moves only when told (:meth:`FakeClock.advance`) or slept on; each
  ``sleep`` adds its own delay.  Right for one task at a time (a backoff schedule, a bucket).
* :class:`AutojumpClock` is the clock for concurrent code: ``sleep`` really waits, for virtual
  time, and a driver jumps the clock to the earliest pending deadline as soon as every task is
  blocked (trio's ``MockClock(autojump_threshold=0)``).  Three tasks sleeping 5 s at once move
  it by 5 s, not 15 s, so lease TTLs and request-log timestamps stay exact.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

__all__ = ["AutojumpClock", "FakeClock"]


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


@dataclass
class _Sleeper:
    deadline: float
    event: anyio.Event = field(default_factory=anyio.Event)
    cancelled: bool = False


class AutojumpClock(FakeClock):
    """Virtual time that jumps to the next deadline whenever every task is blocked."""

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[float, int, _Sleeper]] = []
        self._seq = itertools.count()

    async def sleep(self, seconds: float) -> None:
        delay = max(0.0, seconds)
        self.sleeps.append(delay)
        if delay == 0:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(self.monotonic() + delay)
        heapq.heappush(self._heap, (sleeper.deadline, next(self._seq), sleeper))
        try:
            await sleeper.event.wait()
        finally:
            sleeper.cancelled = not sleeper.event.is_set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[AutojumpClock]:
        """Drive the clock while the block runs (start it inside the test body).

        A single failure of the block is re-raised as itself, not inside an exception group.
        """
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._drive)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _drive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            idle = 0
            while idle < 3:  # every other task has had its turn and is blocked
                await asyncio.sleep(0)
                idle = 0 if loop._ready else idle + 1  # type: ignore[attr-defined]
            while self._heap and self._heap[0][2].cancelled:
                heapq.heappop(self._heap)
            if not self._heap:
                await asyncio.sleep(0.0005)  # nothing on the virtual clock: real I/O, if any
                continue
            deadline = self._heap[0][0]
            if deadline > self.monotonic():
                self.advance(deadline - self.monotonic())
            while self._heap and self._heap[0][0] <= self.monotonic():
                heapq.heappop(self._heap)[2].event.set()
