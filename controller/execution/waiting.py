"""Waiting for a written machine to really run its new version, and to be healthy.

After an update or a create the executor must not take "200 OK" for success (DESIGN.md 5.5,
FLY_API.md 4.5): Fly has silently reverted failed updates, machines crash-loop, checks fail.
:meth:`Waiter.until_healthy` therefore:

1. long-polls ``/wait?state=started&version=<new>&timeout<=60``, looping on 408 until the
   group's ``wait_timeout``; after each 408 it reads the machine and fails fast when it has
   exited.  A 404 right after a create is retried for a short grace period;
2. reads the machine (``GET``) and verifies it runs *that* version in the expected state;
3. a machine with checks (``config.checks`` plus ``config.services[].checks``, counted from
   the config because the runtime list starts empty) is read at the checks' own interval
   (the shortest configured ``interval``; reading faster only sees the same status) until all
   report passing.  A machine without checks must instead stay up for the group's
   ``smoke_period``: one long-poll ``/wait?state=stopped&version=<v>&timeout=<smoke>`` whose
   408 means it stayed up, then one ``GET`` whose events show any exit since the update (a
   crash and restart can slip between the server's state checks).  Crash/exit events since
   the update fail it at once.

A machine updated with ``skip_launch`` (stopped, suspended or created) is only verified to
carry the new version and to have stayed down.  Failures raise :class:`Unhealthy` (the group's
rollout halts) or :class:`MachineGone`; API errors that are not transient propagate.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.clock import Clock
from controller.core import defaults as d
from controller.core.errors import BadRequest, FlyAPIError, NotFound, WaitTimeout
from controller.core.retry import Backoff
from controller.flyapi import Machine, MachineEvent, MachinesClient
from controller.model.actual import GONE_STATES
from controller.model.flyconfig import parse_go_duration

__all__ = [
    "MachineGone",
    "OnStep",
    "Unhealthy",
    "WaitPhase",
    "WaitPolicy",
    "Waiter",
    "check_interval",
    "configured_checks",
    "crash_since_update",
]

#: States a ``skip_launch`` update may leave a machine in (started: someone started it since).
_DOWN_STATES = frozenset({"stopped", "suspended", "created", "started"})
#: Events that begin a new machine version: crash events before them are history.
_VERSION_EVENTS = frozenset({"launch", "update"})
#: Clock skew between us and Fly tolerated when dating events (seconds).
_EVENT_SKEW_SECONDS = 10.0


WaitPhase = Literal["waiting", "checking"]
OnStep = Callable[[WaitPhase, float], None]
"""``on_step(phase, quiet)``: the wait is in ``phase`` and will make no call for ``quiet`` s."""


def _silent(phase: WaitPhase, quiet: float) -> None:
    return None


class Unhealthy(Exception):
    """The machine did not run the new version healthily; ``str(exc)`` says why (one line)."""


class MachineGone(Exception):
    """The machine disappeared (404, or destroyed) while we waited for it."""


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """Timings of :class:`Waiter`, seconds."""

    chunk: float = d.WAIT_CHUNK
    """Longest single ``/wait`` long-poll (Fly accepts 1..60 s)."""
    poll_min: float = d.CHECK_POLL_MIN
    poll_max: float = d.CHECK_POLL_MAX
    check_read_max: float = d.CHECK_READ_MAX
    """Longest pause between two reads of a machine's checks.  Checks are read at their own
    interval, but a check with a 30 s interval can pass on its first run seconds after boot:
    waiting out the whole interval would add it to every machine of a rollout."""
    smoke: float = d.SMOKE_SECONDS
    """How long a machine without checks must stay up without crashing (flyctl: 10 s)."""
    created_404_grace: float = d.CREATED_404_GRACE
    """How long a 404 right after a create is retried (FLY_API.md 1.6)."""
    error_backoff: Backoff = field(
        default_factory=lambda: Backoff(
            base=d.WAIT_ERROR_BACKOFF_BASE,
            cap=d.WAIT_ERROR_BACKOFF_CAP,
            minimum=d.WAIT_ERROR_BACKOFF_BASE,
        )
    )

    def __post_init__(self) -> None:
        if not 1 <= self.chunk <= 60:
            raise ValueError("the /wait chunk must be within 1..60 seconds")
        if not 0 < self.poll_min <= self.poll_max:
            raise ValueError("check polling needs 0 < poll_min <= poll_max")
        if self.smoke < 0 or self.created_404_grace < 0:
            raise ValueError("smoke and grace periods must not be negative")


def configured_checks(config: Mapping[str, Any]) -> int:
    """How many checks a config defines: ``checks`` entries plus every service's ``checks``."""
    checks = config.get("checks")
    count = len(checks) if isinstance(checks, Mapping) else 0
    for service in config.get("services") or ():
        if isinstance(service, Mapping):
            service_checks = service.get("checks")
            if isinstance(service_checks, list):
                count += len(service_checks)
    return count


def check_interval(config: Mapping[str, Any], floor: float, default: float) -> float:
    """How often to read a machine's checks: the shortest ``interval`` of its configured
    checks (Fly runs each check at its interval, so reading faster only re-reads the same
    status), at least ``floor``; ``default`` when no interval is given."""
    intervals: list[float] = []
    entries: list[Any] = []
    checks = config.get("checks")
    if isinstance(checks, Mapping):
        entries.extend(checks.values())
    for service in config.get("services") or ():
        if isinstance(service, Mapping) and isinstance(service.get("checks"), list):
            entries.extend(service["checks"])
    for entry in entries:
        raw = entry.get("interval") if isinstance(entry, Mapping) else None
        try:
            if isinstance(raw, str):
                intervals.append(parse_go_duration(raw) / 1e9)
            elif isinstance(raw, int | float) and not isinstance(raw, bool):
                intervals.append(raw / 1e9 if raw > 1e6 else float(raw))
        except ValueError:
            continue
    positive = [i for i in intervals if i > 0]
    return max(floor, min(positive)) if positive else default


def crash_since_update(events: Iterable[MachineEvent], *, since: float | None = None) -> str | None:
    """Describe a crash (an unrequested exit) since the newest launch/update event, if any.

    ``since`` (unix seconds, when we wrote the machine) is a second guard in case the event
    list has no launch/update marker: exits older than it (less a clock-skew margin) are the
    previous version's history, not a verdict on the new one.
    """
    ordered = sorted(events, key=lambda e: e.timestamp or 0, reverse=True)
    oldest_ms = None if since is None else (since - _EVENT_SKEW_SECONDS) * 1000
    for event in ordered:
        if event.type in _VERSION_EVENTS:
            return None
        if oldest_ms is not None and event.timestamp is not None and event.timestamp < oldest_ms:
            return None
        if event.type != "exit":
            continue
        exit_event = event.request.get("exit_event") if isinstance(event.request, dict) else None
        if not isinstance(exit_event, dict) or exit_event.get("requested_stop"):
            continue
        code = exit_event.get("exit_code")
        oom = bool(exit_event.get("oom_killed"))
        if oom or (isinstance(code, int) and code != 0):
            restarts = exit_event.get("restart_count")
            detail = "killed: out of memory" if oom else f"exited with code {code}"
            if isinstance(restarts, int) and restarts:
                detail += f" (restarted {restarts} times)"
            return f"machine {detail} after the update"
    return None


class Waiter:
    """Waits for machines through one client (see the module docstring)."""

    def __init__(
        self, client: MachinesClient, *, clock: Clock, rng: random.Random, policy: WaitPolicy
    ) -> None:
        self._client = client
        self._clock = clock
        self._rng = rng
        self.policy = policy

    async def until_healthy(
        self,
        app: str,
        machine_id: str,
        version: str,
        *,
        running: bool,
        wait_timeout: float,
        just_created: bool = False,
        since: float | None = None,
        on_step: OnStep | None = None,
        smoke: float | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> Machine:
        """Wait until the machine runs ``version`` healthily (``running``) or stayed down.

        ``since`` is when the machine was written (unix seconds; default: now).  ``smoke`` is
        the group's smoke period (default: the policy's).  ``config`` is the config we
        wrote, when known: without checks in it, no read is needed before the smoke period.
        ``on_step(phase, quiet)`` is told when the wait enters a phase (``"waiting"`` for the
        start, ``"checking"`` after) and, before every long-poll or check-interval pause, how
        many seconds it will now deliberately make no other call (liveness, DESIGN.md 7).
        Returns the last machine read.  Raises :class:`Unhealthy`, :class:`MachineGone`, or a
        non-transient :class:`~controller.core.errors.FlyAPIError`.
        """
        written = self._clock.now() if since is None else since
        deadline = self._clock.monotonic() + wait_timeout
        step = on_step or _silent
        if not running:
            return await self._settled_down(app, machine_id, version, deadline, wait_timeout)
        await self._wait_started(
            app, machine_id, version, deadline, wait_timeout, just_created, written, step
        )
        step("checking", 0.0)
        smoke_period = self.policy.smoke if smoke is None else smoke
        return await self._watch(
            app, machine_id, version, deadline, wait_timeout, written, smoke_period, config, step
        )

    # ------------------------------------------------------------------ phases

    async def _wait_started(
        self,
        app: str,
        machine_id: str,
        version: str,
        deadline: float,
        wait_timeout: float,
        just_created: bool,
        since: float,
        step: OnStep,
    ) -> None:
        grace_end = self._clock.monotonic() + self.policy.created_404_grace
        failures = 0
        while True:
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise Unhealthy(f"machine did not reach started within {wait_timeout:g}s")
            poll = min(self.policy.chunk, remaining)
            step("waiting", poll)
            try:
                await self._client.wait_machine(
                    app, machine_id, state="started", version=version, timeout=poll
                )
            except WaitTimeout:  # not started yet: fail fast if it never will be
                await self._read_running(app, machine_id, version, deadline, since)
            except NotFound:
                if not just_created or self._clock.monotonic() >= grace_end:
                    raise MachineGone("machine not found while waiting for it") from None
                failures += 1
                await self._pause(failures, deadline)
            except BadRequest:
                # e.g. "failed to reach desired state, started, currently replaced"
                machine = await self._read_running(app, machine_id, version, deadline, since)
                if machine.state == "started":
                    return
                raise
            except FlyAPIError as exc:
                if not exc.retryable:
                    raise
                failures += 1
                await self._pause(failures, deadline)
            else:
                return

    async def _watch(
        self,
        app: str,
        machine_id: str,
        version: str,
        deadline: float,
        wait_timeout: float,
        since: float,
        smoke: float,
        config: Mapping[str, Any] | None,
        step: OnStep,
    ) -> Machine:
        expected = None if config is None else configured_checks(config)
        if expected == 0:  # known from the config we wrote: no read before the smoke period
            if smoke > 0:
                await self._stays_up(app, machine_id, version, deadline, smoke, step)
            machine = await self._read_running(app, machine_id, version, deadline, since)
            return machine
        machine = await self._read_running(app, machine_id, version, deadline, since)
        expected = configured_checks(machine.config)
        if not expected:
            if smoke > 0:
                await self._stays_up(app, machine_id, version, deadline, smoke, step)
                machine = await self._read_running(app, machine_id, version, deadline, since)
            return machine
        pause = min(
            check_interval(machine.config, self.policy.poll_min, self.policy.poll_max),
            self.policy.check_read_max,
        )
        while True:
            if machine.state == "started":
                checks = machine.checks
                if len(checks) >= expected and all(c.status == "passing" for c in checks):
                    return machine
            now = self._clock.monotonic()
            if now >= deadline:
                raise Unhealthy(_not_healthy(machine, expected, wait_timeout))
            quiet = min(pause * self._rng.uniform(1.0, 1.1), deadline - now)
            step("checking", quiet)
            await self._clock.sleep(quiet)
            machine = await self._read_running(app, machine_id, version, deadline, since)

    async def _stays_up(
        self,
        app: str,
        machine_id: str,
        version: str,
        deadline: float,
        smoke: float,
        step: OnStep,
    ) -> None:
        """Long-poll ``/wait?state=stopped&version=<v>`` for the smoke period.

        A 408 means the machine did not stop within the poll: it stayed up (one request for
        the whole period when it fits in one poll).  A 200 means it stopped; the caller's read
        then judges why.  A brief crash and restart between the emulator's/Fly's state checks
        may not show here, which is why the caller reads the machine once more afterwards and
        checks its events for exits since the update.
        """
        end = min(self._clock.monotonic() + smoke, deadline)
        failures = 0
        while (remaining := end - self._clock.monotonic()) > 0:
            poll = min(self.policy.chunk, remaining)
            step("checking", poll)
            try:
                await self._client.wait_machine(
                    app, machine_id, state="stopped", version=version, timeout=poll
                )
            except WaitTimeout:
                continue
            except BadRequest:
                return  # e.g. "currently replaced": the caller's read says what happened
            except NotFound:
                raise MachineGone("machine not found while waiting for it") from None
            except FlyAPIError as exc:
                if not exc.retryable:
                    raise
                failures += 1
                await self._pause(failures, end)
            else:
                return  # it stopped: the caller's read judges it

    async def _settled_down(
        self, app: str, machine_id: str, version: str, deadline: float, wait_timeout: float
    ) -> Machine:
        while True:
            machine = await self._read(app, machine_id, deadline=deadline)
            self._judge(machine, version, running=False)
            if machine.state in _DOWN_STATES:
                return machine
            now = self._clock.monotonic()
            if now >= deadline:
                raise Unhealthy(
                    f"machine did not settle within {wait_timeout:g}s (state {machine.state})"
                )
            pause = self._rng.uniform(self.policy.poll_min, self.policy.poll_max)
            await self._clock.sleep(min(pause, deadline - now))

    # ------------------------------------------------------------------ helpers

    async def _read(self, app: str, machine_id: str, *, deadline: float | None = None) -> Machine:
        """GET the machine; transient failures are retried until ``deadline`` (if given)."""
        failures = 0
        while True:
            try:
                return await self._client.get_machine(app, machine_id)
            except NotFound:
                raise MachineGone("machine not found while waiting for it") from None
            except FlyAPIError as exc:
                if not exc.retryable or deadline is None:
                    raise
                if self._clock.monotonic() >= deadline:
                    raise
                failures += 1
                await self._pause(failures, deadline)

    async def _read_running(
        self, app: str, machine_id: str, version: str, deadline: float, since: float
    ) -> Machine:
        """Read the machine and judge it as one that should run ``version`` (see
        :meth:`_judge`); raises :class:`Unhealthy` / :class:`MachineGone` otherwise."""
        machine = await self._read(app, machine_id, deadline=deadline)
        self._judge(machine, version, running=True, since=since)
        return machine

    async def _pause(self, failures: int, deadline: float) -> None:
        remaining = max(0.0, deadline - self._clock.monotonic())
        await self._clock.sleep(
            min(remaining, self.policy.error_backoff.delay(failures, self._rng))
        )

    @staticmethod
    def _judge(
        machine: Machine, version: str, *, running: bool, since: float | None = None
    ) -> None:
        """Fail fast: gone, another version (reverted or replaced), crashed or exited."""
        if machine.state in GONE_STATES:
            raise MachineGone(f"machine is {machine.state}")
        if machine.version and machine.version != version:
            raise Unhealthy(
                f"machine runs version {machine.version}, not {version}: "
                "the update was reverted or replaced"
            )
        if machine.state == "failed":
            raise Unhealthy("machine failed")
        if not running:
            return
        crash = crash_since_update(machine.events, since=since)
        if crash is not None:
            raise Unhealthy(crash)
        if machine.state == "stopped":
            raise Unhealthy("machine stopped instead of running")


def _not_healthy(machine: Machine, expected: int | None, wait_timeout: float) -> str:
    if machine.state != "started":
        return f"machine not started within {wait_timeout:g}s (state {machine.state})"
    if not expected:
        return f"machine did not stay up for the smoke period within {wait_timeout:g}s"
    passing = sum(c.status == "passing" for c in machine.checks)
    failing = sorted(c.name for c in machine.checks if c.status != "passing")
    text = f"checks not passing within {wait_timeout:g}s: {passing}/{expected} passing"
    if failing:
        text += f" (not passing: {', '.join(failing[:5])})"
    return text
