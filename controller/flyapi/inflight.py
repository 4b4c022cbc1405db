"""Bookkeeping of the API calls in flight: what each is doing until when, and whether the API
still answers.  The daemon's liveness (``/healthz``, the systemd watchdog) reads it.

Why the exchange keeps this, not the daemon: only the exchange knows that an attempt is on the
wire and what its own deadline is, or that it is sleeping before a retry and for how long.
With that, liveness can tell the two situations that look alike from outside (no response for
a minute):

* **waiting as it should**: a ``/wait`` long-poll may legitimately take 60 s, a retry sleep
  its backoff; each such step has a deadline of its own (the attempt's request deadline, the
  sleep's end), and while a step is within it the loop is waiting on the API, not stuck;
* **the API stopped answering**: an attempt failed (a timeout, a dropped connection, a 5xx;
  an attempt past its own deadline counts as failed already) and no answer came since.  How
  long that may last is then about one request deadline plus a retry sleep (the retry's
  chance to answer), whatever the longest request could take: a long-poll started *after*
  the API went silent does not buy it another minute.  Attempts that began *before* the
  first failure still count until their own deadlines (a long-poll started while the API
  answered is not a symptom).

An *answer* is any response below 500 (a 404, a 409, a 408 "not yet" from ``/wait``, a 429):
the API is there and speaking.  Times are the injected clock's monotonic seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controller.clock import Clock

__all__ = ["ApiCalls", "CallLedger", "Silence", "Step"]


@dataclass(frozen=True, slots=True)
class Step:
    """What one call in flight is doing: an attempt on the wire, or a sleep before a retry."""

    started: float
    due: float
    """The attempt's request deadline, or the end of the sleep."""
    attempt: bool


@dataclass(frozen=True, slots=True)
class Silence:
    """The API has not answered although it should have."""

    since: float
    """The last moment it could still have answered: the start of the first attempt that got
    no answer (or the last answer, if that came later)."""
    failed_at: float
    """When that attempt failed (or its deadline, if it is overdue)."""


@dataclass(frozen=True, slots=True)
class ApiCalls:
    """A snapshot of :class:`CallLedger` (see the module docstring for what it is for)."""

    last_answer: float
    """When the API last answered (a status below 500); ``-inf`` before any answer."""
    failure: Silence | None
    """The first failed attempt since the last answer; ``None`` if none failed."""
    steps: tuple[Step, ...]
    attempts: int
    """Attempts sent so far (a count: did anything need the API since a given moment?)."""

    def waiting(self, now: float) -> bool:
        """Some call is waiting on the API: an attempt on the wire (one past its deadline too:
        :meth:`silence` counts it as failed, so it is bounded there), or a sleep before a
        retry that is not over."""
        return any(step.attempt or step.due >= now for step in self.steps)

    def silence(self, now: float) -> Silence | None:
        """The first failure since the last answer, counting an attempt overdue now as
        failed at its deadline (it has, the exchange just did not get to say so yet);
        ``None`` while the API answers."""
        found = [
            Silence(max(s.started, self.last_answer), s.due)
            for s in self.steps
            if s.attempt and s.due < now
        ]
        if self.failure is not None:
            found.append(self.failure)
        return min(found, key=lambda f: f.failed_at) if found else None

    def older_pending(self, now: float, since: float) -> bool:
        """An attempt that began before ``since`` (the API went silent) is still within its
        own deadline: a long-poll started while the API answered, not yet a symptom."""
        return any(s.attempt and s.started < since and s.due >= now for s in self.steps)


class CallLedger:
    """Steps of the calls in flight, the last answer and the first failure since (mutable; the
    exchange updates it, :meth:`snapshot` reads it)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._steps: dict[int, Step] = {}
        self.last_answer = -math.inf
        self.failure: Silence | None = None
        self.attempts = 0

    def attempt(self, call: int, deadline: float) -> None:
        """Call ``call`` sends an attempt that must end within ``deadline`` seconds."""
        now = self._clock.monotonic()
        self._steps[call] = Step(now, now + deadline, attempt=True)
        self.attempts += 1

    def sleep(self, call: int, seconds: float) -> None:
        """Call ``call`` sleeps ``seconds`` before its next attempt."""
        now = self._clock.monotonic()
        self._steps[call] = Step(now, now + seconds, attempt=False)

    def idle(self, call: int) -> None:
        """Call ``call`` neither sends nor sleeps (pacing, or it returned)."""
        self._steps.pop(call, None)

    def answered(self, call: int) -> None:
        """Call ``call``'s attempt got an answer (a status below 500)."""
        self._steps.pop(call, None)
        self.last_answer = self._clock.monotonic()
        self.failure = None

    def failed(self, call: int) -> None:
        """Call ``call``'s attempt got no answer (timeout, dropped connection) or a 5xx."""
        now = self._clock.monotonic()
        step = self._steps.pop(call, None)
        if self.failure is None:
            started = step.started if step is not None else now
            self.failure = Silence(max(started, self.last_answer), now)

    def snapshot(self) -> ApiCalls:
        """The current state, as a value."""
        return ApiCalls(self.last_answer, self.failure, tuple(self._steps.values()), self.attempts)
