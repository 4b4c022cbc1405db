"""Timed machine state transitions, computed lazily from timestamps (no background tasks).

A machine carries a queue of :class:`Step` records (e.g. ``stopping`` for ``stop_seconds`` then
``stopped``, then ``starting`` for ``boot_seconds`` then ``started``).  :func:`settle` is called
on every access and advances the queue to the clock's current time, emitting the events Fly
would have emitted at the moment each step finished.  So a ``FakeClock`` that jumps ten seconds
sees a fully booted machine on the next read, in zero wall time.

Crash loops (image tag with a crash marker) are simulated the same way: a started machine exits
``crash_after_seconds`` after each boot and is restarted according to ``config.restart``
(DOCS-STATES; FLY_API.md 4.5 describes the exit events flyctl inspects).  Checks
(``config.checks`` + ``services[].checks``) report nothing until ``checks_pass_seconds`` after
the machine reached ``started``, then ``passing`` (or ``critical`` for failing machines).
"""

from __future__ import annotations

import math
from typing import Any

from controller.emulator import configs
from controller.emulator.model import Event, Machine, Runtime, Step, rfc3339

SETTLED_STATES = ("created", "started", "stopped", "suspended", "failed", "destroyed")
EVENT_CAP = 50
_MAX_SETTLE_STEPS = 500


def record(
    machine: Machine,
    rt: Runtime,
    kind: str,
    status: str,
    *,
    source: str = "user",
    at: float | None = None,
    request: dict[str, Any] | None = None,
) -> Event:
    """Append an event (``at`` is a monotonic instant, default now); keeps the newest 50."""
    wall = rt.wall(at)
    event = Event(rt.ids.ulid(), kind, status, source, int(wall * 1000), request)
    machine.events.append(event)
    del machine.events[:-EVENT_CAP]
    return event


def begin(machine: Machine, rt: Runtime, steps: list[Step]) -> None:
    """Replace whatever the machine was doing with ``steps``, starting now."""
    machine.steps = list(steps)
    machine.step_started_at = rt.now()
    if steps:
        machine.state = steps[0].transient
        machine.started_at = None
    settle(machine, rt)


def target_state(machine: Machine) -> str:
    """Where the machine is heading: the last queued step's final state, else its state."""
    return machine.steps[-1].final if machine.steps else machine.state


def crashloops(machine: Machine, rt: Runtime) -> bool:
    """True for machines whose image tag contains a crash marker (``crashloop``)."""
    tag = str(machine.image_ref.get("tag", ""))
    return any(marker and marker in tag for marker in rt.behaviour.crashloop_image_markers)


def checks_fail(machine: Machine, rt: Runtime) -> bool:
    """Whether this machine's checks report critical instead of passing."""
    if machine.checks_mode != "auto":
        return machine.checks_mode == "failing"
    env = machine.config.get("env") or {}
    return env.get(rt.behaviour.fail_checks_env) == "1" or crashloops(machine, rt)


def _restarts_left(machine: Machine) -> float:
    restart = machine.config.get("restart") or {}
    policy = restart.get("policy", "on-failure")
    if policy == "always":
        return math.inf
    if policy == "on-failure":
        return int(restart.get("max_retries", configs.DEFAULT_MAX_RETRIES)) - machine.restart_count
    return 0


def _finish_step(machine: Machine, rt: Runtime, step: Step, end: float) -> None:
    machine.state = step.final
    record(machine, rt, step.event, step.final, source="flyd", at=end)
    if step.final == "started":
        machine.started_at = end


def _skip_crash_cycles(machine: Machine, rt: Runtime, now: float) -> None:
    """Jump over whole crash/restart cycles arithmetically so settling stays bounded."""
    if machine.started_at is None:
        return
    cycle = rt.behaviour.crash_after_seconds + rt.behaviour.boot_seconds
    cycles = int((now - machine.started_at) // cycle) - 2
    cycles = int(min(cycles, _restarts_left(machine) - 1))
    if cycles > 0:
        machine.restart_count += cycles
        machine.started_at += cycles * cycle


def _crash(machine: Machine, rt: Runtime, at: float) -> None:
    restarting = _restarts_left(machine) > 0
    if restarting:
        machine.restart_count += 1
    exit_event = {
        "exit_code": 1,
        "guest_exit_code": 1,
        "guest_signal": -1,
        "oom_killed": False,
        "requested_stop": False,
        "restarting": restarting,
        "restart_count": machine.restart_count,
        "exited_at": rfc3339(rt.wall(at)),
    }
    record(machine, rt, "exit", "stopped", source="flyd", at=at, request={"exit_event": exit_event})
    machine.started_at = None
    if restarting:
        machine.steps = [Step("starting", rt.behaviour.boot_seconds, "started", "start")]
        machine.step_started_at = at
        machine.state = "starting"
    else:
        machine.state = "stopped"


def settle(machine: Machine, rt: Runtime) -> None:
    """Advance queued transitions and crash loops up to the clock's current time."""
    now = rt.now()
    for _ in range(_MAX_SETTLE_STEPS):
        if machine.steps:
            step = machine.steps[0]
            end = machine.step_started_at + step.duration
            if now < end:
                return
            machine.steps.pop(0)
            _finish_step(machine, rt, step, end)
            machine.step_started_at = end
            if machine.steps:
                machine.state = machine.steps[0].transient
            continue
        if machine.state == "started" and machine.started_at is not None:
            if not crashloops(machine, rt):
                return
            _skip_crash_cycles(machine, rt, now)
            crash_at = machine.started_at + rt.behaviour.crash_after_seconds
            if now < crash_at:
                return
            _crash(machine, rt, crash_at)
            continue
        return


def next_change_in(machine: Machine, rt: Runtime) -> float | None:
    """Seconds until the machine's state next changes by itself, or None if it will not."""
    now = rt.now()
    if machine.steps:
        return max(0.0, machine.step_started_at + machine.steps[0].duration - now)
    if machine.state == "started" and machine.started_at is not None and crashloops(machine, rt):
        return max(0.0, machine.started_at + rt.behaviour.crash_after_seconds - now)
    return None


def check_statuses(machine: Machine, rt: Runtime) -> list[dict[str, Any]]:
    """Runtime check results: empty until ``checks_pass_seconds`` after the machine started."""
    names = configs.configured_checks(machine.config)
    if not names or machine.state != "started" or machine.started_at is None:
        return []
    ready_at = machine.started_at + rt.behaviour.checks_pass_seconds
    if rt.now() < ready_at:
        return []
    failing = checks_fail(machine, rt)
    return [
        {
            "name": name,
            "status": "critical" if failing else "passing",
            "output": "connect: connection refused" if failing else "Success",
            "updated_at": rfc3339(rt.wall(ready_at)),
        }
        for name in names
    ]
