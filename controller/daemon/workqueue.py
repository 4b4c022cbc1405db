"""The daemon's work queue: one item per app, deduplicated, with per-item backoff.

Modelled on controller-runtime's rate-limited work queue (client-go ``util/workqueue``):

* an item is in the queue at most once; adding one that is waiting is a no-op, and adding one
  that is being processed marks it *dirty* so it runs again right after (never twice at once);
* :meth:`WorkQueue.fail` schedules a failed item after a per-item backoff, **1 s doubling to a
  5 min cap with full jitter**, and :meth:`WorkQueue.forget` resets it after a success; so one
  failing app backs off alone while every other app keeps its pace;
* :meth:`WorkQueue.requeue_after` schedules an item that is not failing but must not run
  before a time (someone else's lease held until T, a capacity cooldown);
* a plain :meth:`WorkQueue.add` (the periodic pass) honours those not-before times; a forced
  add (its desired-state file changed, SIGHUP) runs the item now.

Time comes from an injected :class:`~controller.clock.Clock` and jitter from an injected
:class:`random.Random`, so backoff schedules are tested on a fake clock in zero wall time.  The
bookkeeping methods are synchronous and never block; only :meth:`WorkQueue.get` waits.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel

from controller.clock import Clock
from controller.core.retry import Backoff

__all__ = ["ITEM_BACKOFF", "WorkQueue"]

K = TypeVar("K", bound=Hashable)

#: Per-item failure backoff (DESIGN.md 7): 1 s doubling, capped at 5 minutes, full jitter.
ITEM_BACKOFF = Backoff(base=1.0, cap=300.0, minimum=0.0, factor=2.0)


class WorkQueue(Generic[K]):
    """A deduplicating queue of keys with delayed adds and per-key failure backoff."""

    def __init__(
        self, *, clock: Clock, rng: random.Random, backoff: Backoff = ITEM_BACKOFF
    ) -> None:
        self._clock = clock
        self._rng = rng
        self.backoff = backoff
        self._ready: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: dict[K, float] = {}
        """Key -> monotonic time at which it is added (delayed adds, backoffs)."""
        self._not_before: dict[K, float] = {}
        """Key -> monotonic time before which a plain add does not run it."""
        self._failures: dict[K, int] = {}
        self._changed: anyio.Event | None = None
        self._closed = False

    # ------------------------------------------------------------------ adding

    def add(self, key: K, *, force: bool = False) -> None:
        """Queue ``key`` now, unless it is held back (backoff, requeue) and not ``force``."""
        if self._closed:
            return
        if force:
            self._not_before.pop(key, None)
            self._waiting.pop(key, None)
        else:
            held_until = self._not_before.get(key)
            if held_until is not None and self._clock.monotonic() < held_until:
                self._waiting.setdefault(key, held_until)  # it comes back by itself
                return
        self._enqueue(key)

    def add_after(self, key: K, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (the earliest of several delayed adds wins)."""
        if self._closed:
            return
        if delay <= 0:
            self._enqueue(key)
            return
        at = self._clock.monotonic() + delay
        current = self._waiting.get(key)
        if current is None or at < current:
            self._waiting[key] = at
            self._notify()

    def requeue_after(self, key: K, delay: float) -> None:
        """Run ``key`` again after ``delay``, not earlier (unless forced); not a failure."""
        self._hold(key, max(0.0, delay))

    def fail(self, key: K, *, at_least: float = 0.0, at_most: float | None = None) -> float:
        """Count a failure of ``key`` and hold it back for its backoff (at least ``at_least``
        seconds, e.g. a server's hint; the backoff cut to ``at_most`` when given); returns the
        delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        backoff = self.backoff.delay(failures, self._rng)
        if at_most is not None:
            backoff = min(backoff, at_most)
        delay = max(at_least, backoff)
        self._hold(key, delay)
        return delay

    def forget(self, key: K) -> None:
        """``key`` succeeded: reset its failure count and any hold on it."""
        self._failures.pop(key, None)
        self._not_before.pop(key, None)

    def discard(self, key: K) -> None:
        """Drop every trace of ``key`` (its app left the desired state).  A pass of it that is
        being processed finishes; it is not run again."""
        self._failures.pop(key, None)
        self._not_before.pop(key, None)
        self._waiting.pop(key, None)
        self._dirty.discard(key)
        if key in self._ready:
            self._ready.remove(key)

    def _hold(self, key: K, delay: float) -> None:
        if self._closed:
            return
        at = self._clock.monotonic() + delay
        self._not_before[key] = at
        self._waiting[key] = at
        self._notify()

    def _enqueue(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._ready.append(key)
            self._notify()

    # ------------------------------------------------------------------ taking

    async def get(self) -> K | None:
        """The next ready key, waiting as long as needed; ``None`` once shut down.

        The caller must call :meth:`done` with the key when it has finished with it.
        """
        while True:
            if self._closed:
                return None
            self._promote_due()
            if self._ready:
                key = self._ready.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
                return key
            await self._wait(self.next_due_in())

    def done(self, key: K) -> None:
        """``key`` is no longer being processed; if it was added meanwhile, it is queued."""
        self._processing.discard(key)
        if key in self._dirty and not self._closed:
            self._ready.append(key)
            self._notify()

    def shutdown(self) -> None:
        """Stop handing out keys: every :meth:`get` returns ``None`` from now on."""
        self._closed = True
        self._notify()

    # ------------------------------------------------------------------ inspection

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._closed

    def __len__(self) -> int:
        """Keys ready to be handed out now."""
        return len(self._ready)

    def failures(self, key: K) -> int:
        """Consecutive failures of ``key`` since its last success."""
        return self._failures.get(key, 0)

    def held_until(self, key: K) -> float | None:
        """The monotonic time before which a plain add does not run ``key``, if any."""
        until = self._not_before.get(key)
        return until if until is not None and until > self._clock.monotonic() else None

    def is_processing(self, key: K) -> bool:
        """Whether ``key`` was handed out and not yet marked done."""
        return key in self._processing

    def is_queued(self, key: K) -> bool:
        """Whether ``key`` is ready or will be (waiting for its time)."""
        return key in self._dirty or key in self._waiting

    def next_due_in(self) -> float | None:
        """Seconds until the earliest delayed key is due (None: nothing waiting)."""
        if not self._waiting:
            return None
        return max(0.0, min(self._waiting.values()) - self._clock.monotonic())

    # ------------------------------------------------------------------ internals

    def _promote_due(self) -> None:
        now = self._clock.monotonic()
        due = sorted((at, i, k) for i, (k, at) in enumerate(self._waiting.items()) if at <= now)
        for _, _, key in due:
            held_until = self._not_before.get(key)
            if held_until is not None and held_until > now:
                self._waiting[key] = held_until  # an early delayed add does not beat a hold
                continue
            del self._waiting[key]
            self._enqueue(key)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait(self, seconds: float | None) -> None:
        """Until something changes, or ``seconds`` of the clock passed."""
        if seconds is not None and seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        if self._changed is None:
            self._changed = anyio.Event()
        changed = self._changed
        if seconds is None:
            await changed.wait()
            return
        async with anyio.create_task_group() as tg:

            async def timer() -> None:
                await self._clock.sleep(seconds)
                tg.cancel_scope.cancel()

            tg.start_soon(timer)
            await changed.wait()
            tg.cancel_scope.cancel()
