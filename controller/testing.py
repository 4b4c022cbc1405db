"""The virtual test clock, shipped with the package so users' tests can use it too.

One clock, :class:`FakeClock`, right under concurrency: ``sleep`` waits for *virtual* time, and
the clock jumps to the earliest pending deadline exactly when every task is blocked (trio's
``MockClock(autojump_threshold=0)``, the ``looptime`` pytest plugin).  Three tasks sleeping 5 s
at once move it by 5 s, not 15 s; a chain of wake-ups runs in deadline order; a cancelled sleeper
is forgotten; the same program gives the same times on every run, in zero wall time.
:meth:`FakeClock.advance` still moves time by hand (waking whoever is due), ``sleeps`` still
records every requested delay, and the clock works without any event loop for synchronous code.

How "every task is blocked" is seen, using public API only
----------------------------------------------------------
:class:`AutojumpEventLoop` is an ``asyncio.SelectorEventLoop`` built with a wrapping selector (the
``selector=`` constructor argument is public).  The loop asks its selector to wait only when it has
no ready callback left, i.e. when every task is blocked; at that moment the wrapper first polls the
real file descriptors without waiting, and if nothing is ready and some clock has a sleeper, it
jumps that clock to its earliest deadline instead of waiting, and the woken sleepers run in the
same loop iteration.  No heuristic ("three idle passes"), no driver task, no ``loop._ready``.

Why the clock owns the virtual time rather than the loop (looptime's ``loop.time()`` override)
------------------------------------------------------------------------------------------------
Option (a) of the issue virtualises ``loop.time()`` itself, so anyio deadlines follow virtual time
too.  We keep the wrapping selector from (a) but leave ``loop.time()`` real, because:

* one loop then serves every test: an httpx read timeout while a loopback server in a thread or a
  subprocess answers, ``to_thread`` work and subprocess waits keep meaning real seconds (under a
  virtual ``loop.time()`` they would expire the moment the loop waits for real I/O), so tests on
  real servers (tests/e2e, tests/integration, the daemon e2e) keep real time on the same loop;
* the controller never puts a deadline on ``loop.time()`` that a test needs virtual (every TTL,
  backoff and poll interval goes through the injected :class:`~controller.clock.Clock`); the only
  anyio deadline, the shielded lease release, is a real-time guard;
* the clock stays a plain object: it can be created, read and advanced before any loop exists
  (fixtures, synchronous tests), and several independent clocks may share a loop.

On a loop that is not an :class:`AutojumpEventLoop` nothing can see that every task is blocked, so
``sleep`` warns (``RuntimeWarning``; an error in this repository's suite) and falls back to jumping
to its own deadline: exact for one task, overlapping (never additive) for several.  Run code on
this loop with ``asyncio.run(main(), loop_factory=AutojumpEventLoop)`` (3.12+),
``anyio.run(main, backend_options={"loop_factory": AutojumpEventLoop})``, or in pytest-asyncio with
the ``pytest_asyncio_loop_factories`` hook (see ``tests/conftest.py``).  The clock needs no
driver and no ``async with``: create it, hand it to the code under test, and sleep on it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import selectors
import warnings
from collections.abc import Mapping
from typing import Any

import anyio.lowlevel

__all__ = ["AutojumpEventLoop", "FakeClock", "new_event_loop"]

_Selected = list[tuple[selectors.SelectorKey, int]]


class FakeClock:
    """Virtual monotonic and wall time that moves when every task waits, or when told to.

    ``monotonic()`` starts at ``start`` and ``now()`` at ``wall_start``; both move together.
    ``sleeps`` records every requested delay, the simplest way to assert a backoff schedule.
    """

    def __init__(self, start: float = 1_000.0, wall_start: float = 1_700_000_000.0) -> None:
        self._mono = start
        self._wall_offset = wall_start - start
        self.sleeps: list[float] = []
        # (deadline, arrival order, future): the order breaks ties, so wake-ups are deterministic.
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()
        self._warned = False

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> float:
        return self._mono + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (e.g. to expire a lease); sleepers now due wake up."""
        if seconds < 0:
            raise ValueError("a clock never goes backwards")
        self._mono += seconds
        self._wake_due()

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time (at least one checkpoint, even for zero)."""
        delay = max(0.0, seconds)
        self.sleeps.append(delay)
        if delay == 0:
            await anyio.lowlevel.checkpoint()
            return
        loop = asyncio.get_running_loop()
        if not isinstance(loop, AutojumpEventLoop):
            await self._sleep_without_autojump(delay)
            return
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._mono + delay, next(self._arrivals), waiter))
        loop.watch(self)
        await waiter  # a cancelled sleeper's future is cancelled too; _next_deadline drops it

    # ------------------------------------------------------------------ used by the event loop

    def _next_deadline(self) -> float | None:
        """The earliest deadline of a sleeper still waiting (cancelled ones are dropped)."""
        while self._sleepers and _abandoned(self._sleepers[0][2]):
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def _jump(self) -> None:
        """Move to the earliest deadline (exactly, never past it) and wake every sleeper due."""
        deadline = self._next_deadline()
        if deadline is not None and deadline > self._mono:
            self._mono = deadline
        self._wake_due()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not _abandoned(waiter):
                _resolve(waiter)

    async def _sleep_without_autojump(self, delay: float) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(
                "FakeClock.sleep outside an AutojumpEventLoop: it cannot see when every task "
                "waits, so each sleeper jumps to its own deadline (exact for one task only)",
                RuntimeWarning,
                stacklevel=3,
            )
        deadline = self._mono + delay
        await anyio.lowlevel.checkpoint()  # concurrent sleepers take their deadlines first
        self._mono = max(self._mono, deadline)
        self._wake_due()


def _abandoned(waiter: asyncio.Future[None]) -> bool:
    """Cancelled, or left behind on a loop that has been closed since."""
    return waiter.done() or waiter.get_loop().is_closed()


def _resolve(waiter: asyncio.Future[None]) -> None:
    """Wake a sleeper from its own loop's thread (``advance`` may be called from another)."""
    loop = waiter.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        waiter.set_result(None)
    else:
        loop.call_soon_threadsafe(_set_if_pending, waiter)


def _set_if_pending(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _AutojumpSelector(selectors.BaseSelector):
    """A selector that, when asked to wait with nothing ready, lets a virtual clock jump instead."""

    def __init__(self, loop: AutojumpEventLoop) -> None:
        self._inner = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> _Selected:
        if timeout is not None and timeout <= 0:
            return self._inner.select(timeout)  # callbacks are ready: not every task waits
        ready = self._inner.select(0)  # real I/O first: a socket or thread result wins
        if ready or self._loop.jump_a_clock():
            return ready
        return self._inner.select(timeout)

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


class AutojumpEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop on which :class:`FakeClock` sleepers wake when every task waits.

    ``loop.time()`` stays real (see the module docstring for why).  Clocks register themselves
    on their first sleep; when the loop would block, the clock whose next sleeper is soonest (by
    its own time; ties go to the clock slept on first) jumps, and the loop runs on.
    """

    def __init__(self) -> None:
        self._autojump_clocks: list[FakeClock] = []
        super().__init__(selector=_AutojumpSelector(self))

    def watch(self, clock: FakeClock) -> None:
        """Let ``clock`` jump when this loop would otherwise block."""
        if not any(known is clock for known in self._autojump_clocks):
            self._autojump_clocks.append(clock)

    def jump_a_clock(self) -> bool:
        """Every task waits: jump the clock with the soonest sleeper; False if none sleeps."""
        soonest: tuple[float, FakeClock] | None = None
        for clock in self._autojump_clocks:
            deadline = clock._next_deadline()
            if deadline is None:
                continue
            delay = deadline - clock.monotonic()
            if soonest is None or delay < soonest[0]:
                soonest = (delay, clock)
        if soonest is None:
            return False
        soonest[1]._jump()
        return True


def new_event_loop() -> AutojumpEventLoop:
    """A fresh :class:`AutojumpEventLoop` (a ``loop_factory`` for asyncio, anyio, pytest)."""
    return AutojumpEventLoop()
