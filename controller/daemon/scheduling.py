"""When the daemon reconciles what: shards of apps, and the tickers that start passes.

* :func:`shard_of` / :func:`in_shard`: with ``--shard-count`` N, a process owns the apps whose
  stable hash (sha256 of the name, never Python's salted ``hash``) modulo N is its
  ``--shard-index``, the same in every process and release.
* :class:`ApschedulerTicker`: the production ticker, an apscheduler 3.x ``AsyncIOScheduler``
  interval job (``max_instances=1``, ``coalesce=True``, jitter).  The daemon only ever talks to
  the :class:`Ticker` protocol, so tests start passes directly or use :class:`ClockTicker`,
  which runs on an injected clock in zero wall time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from controller.clock import Clock

__all__ = ["ApschedulerTicker", "ClockTicker", "Ticker", "in_shard", "shard_of"]


def shard_of(name: str, count: int) -> int:
    """The shard of app ``name`` among ``count``: stable across processes and versions
    (sha256, never Python's salted ``hash``)."""
    if count < 1:
        raise ValueError("shard count must be at least 1")
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def in_shard(name: str, index: int, count: int) -> bool:
    """Whether shard ``index`` of ``count`` owns app ``name``."""
    return shard_of(name, count) == index


# ------------------------------------------------------------------------------ scheduling


class Ticker(Protocol):
    """Calls ``job`` every interval until cancelled (the first call one interval from now)."""

    async def run(self, job: Callable[[], Awaitable[None]]) -> None: ...


class ApschedulerTicker:
    """The production ticker: an apscheduler 3.x ``AsyncIOScheduler`` interval job.

    ``max_instances=1`` and ``coalesce=True``: a pass that overruns the interval is never run
    twice at once, and missed runs collapse into one.  ``jitter`` seconds at most are added to
    each run (apscheduler draws them).
    """

    def __init__(self, interval: float, jitter: float = 0.0) -> None:
        self.interval = interval
        self.jitter = jitter
        self.scheduler: AsyncIOScheduler | None = None

    async def run(self, job: Callable[[], Awaitable[None]]) -> None:
        scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=dt.UTC)
        scheduler.add_job(
            job,
            IntervalTrigger(seconds=self.interval, jitter=self.jitter or None, timezone=dt.UTC),
            id="reconcile-pass",
            name="reconcile pass",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self.scheduler = scheduler
        scheduler.start()
        try:
            await anyio.sleep_forever()
        finally:
            scheduler.shutdown(wait=False)
            self.scheduler = None


class ClockTicker:
    """A ticker on an injected clock (tests: passes on a fake clock in zero wall time)."""

    def __init__(
        self, clock: Clock, interval: float, jitter: float = 0.0, rng: random.Random | None = None
    ) -> None:
        self._clock = clock
        self.interval = interval
        self.jitter = jitter
        self._rng = rng or random.Random(0)

    async def run(self, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await self._clock.sleep(self.interval + self._rng.uniform(0, self.jitter))
            await job()
