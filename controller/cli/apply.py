"""``apply``: observe and plan every selected app, confirm, execute, report, pick an exit code.

The command (:mod:`controller.cli.apply_command`) and ``make demo`` call :func:`apply_apps`;
the executor does the work per app, all apps concurrently and sharing its ``max_in_flight``
limiter.  Progress goes to a :class:`Reporter`:
a live ``rich`` progress display on a terminal, one plain line per finished action otherwise
(CI logs, journald).  :func:`exit_code` is the single mapping from results to the documented
exit codes:

====  ===============================================================================
0     converged: every action ended ok or no-op
1     error: auth, an API failure while listing, a bad request, an unexpected error
3     partial: some machines blocked by capacity, quota, a volume, a halted rollout, a
      conflict requeue, or an app whose desired-state file is broken (the others applied)
4     refused by a safety budget, or leases still held by someone else after --lease-wait
====  ===============================================================================

When several apply, the most severe wins in the order 1, 4, 3, 0.  An apply interrupted by
Ctrl-C exits 130 (the shell's code for SIGINT), by SIGTERM 143, after printing ``interrupted``
and the summary.

**Ctrl-C** (:mod:`controller.cli.interrupting`, the daemon's drain reused): the first
SIGINT/SIGTERM during execution lets no new machine operation start (the executor's in-flight
limiter is closed, ``total_tokens = 0``), lets the ones in flight finish within ``grace``
seconds, then cancels what is left; the executor releases every lease in shielded ``finally``
blocks, so cancelled work still lets go of its leases.  A second Ctrl-C cancels at once
(leases are still released).

**Output**: on a terminal, a live progress bar per app with elapsed time and an ETA; off a
terminal (CI logs, journald), one line per finished action, starting with a UTC timestamp and
ending with the action's duration.  The same problem on many machines (a refused plan of
10,000 creates, a region out of capacity) is printed :data:`REPEATS_SHOWN` times, then counted
in one line at the end; the plan shown first summarises long runs the same way
(:func:`controller.planning.render.summarise_runs`).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

import anyio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from controller.cli.interrupting import Interrupt, announcement, drained
from controller.clock import Clock, SystemClock
from controller.core.errors import FlyAPIError
from controller.execution.executor import Executor
from controller.execution.outcomes import (
    AppResult,
    Event,
    MachineResult,
    Outcome,
    Severity,
    one_line,
)
from controller.execution.outcomes import Progress as Step
from controller.execution.reconciler import Observed, execute_observed, observe_and_plan
from controller.model.desired import DesiredApp
from controller.planning.plan import AppPlan
from controller.planning.render import PlanError, render

PLAIN_WIDTH = 160
REPEATS_SHOWN = 10
"""The same problem (app, action, group, region, outcome, message) is printed this many times;
further ones are counted and summed up in one line when the progress display stops."""
EXIT_CONVERGED = 0
EXIT_ERROR = 1
EXIT_PARTIAL = 3
EXIT_REFUSED = 4


def exit_code(results: Sequence[AppResult], *, blocked_apps: Sequence[str] = ()) -> int:
    """The exit code of an apply: the worst severity of the outcome table
    (:mod:`controller.core.outcomes`; see the module docstring)."""
    severity = max((r.severity for r in results), default=Severity.CONVERGED)
    if blocked_apps:
        severity = max(severity, Severity.PARTIAL)
    return severity.exit_code


@dataclass(frozen=True)
class ApplyReport:
    """What an apply did: the plans shown, each app's result, and apps it could not plan.

    ``interrupted``: Ctrl-C stopped it; ``left`` counts, per app, the planned changes that
    never ran (an interrupted app's ``results`` hold only what finished)."""

    plans: tuple[AppPlan, ...]
    results: tuple[AppResult, ...]
    applied: bool
    interrupted: bool = False
    left: Mapping[str, int] = field(default_factory=dict)

    @property
    def has_changes(self) -> bool:
        return any(p.has_changes for p in self.plans)


class Reporter:
    """Progress and summary output; ``rich`` live display on a TTY, plain lines otherwise."""

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        force_plain: bool = False,
        show_plan: bool = True,
        redact: Callable[[str], str] = str,
        clock: Clock | None = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.clock = clock or SystemClock()
        self.finished: dict[str, list[MachineResult]] = {}
        """Every final result seen, per app (what an interrupted apply reports)."""
        self._began: dict[tuple[str, str | None], float] = {}
        self.show_plan = show_plan
        # API messages can echo values that were never in a request of ours (so the client
        # could not scrub them): everything printed passes through the log redactor too.
        self.redact = redact
        self.console = Console(file=self.stream, soft_wrap=True, highlight=False)
        if not self.console.is_terminal:  # logs: wide tables rather than wrapped cells
            self.console = Console(
                file=self.stream, soft_wrap=True, highlight=False, width=PLAIN_WIDTH
            )
        self.live = self.console.is_terminal and not force_plain
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._seen: Counter[tuple[str, str, str | None, str, Outcome, str]] = Counter()

    def plan(self, plans: Sequence[AppPlan], errors: Sequence[PlanError] = ()) -> None:
        if self.show_plan:
            self.console.print(self.redact(render(plans, errors)), markup=False, end="")

    def start(self, totals: Mapping[str, int]) -> None:
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[last]}"),
            console=self.console,
        )
        self._progress.start()
        for app, total in totals.items():
            self._tasks[app] = self._progress.add_task(app, total=total, last="")

    def _timestamp(self) -> str:
        when = dt.datetime.fromtimestamp(self.clock.now(), tz=dt.UTC)
        return when.isoformat(timespec="seconds").replace("+00:00", "Z")

    def event(self, event: Event) -> None:
        key = (event.app, event.slot or event.machine_id)
        if isinstance(event, Step):
            self._began.setdefault(key, self.clock.monotonic())
        if isinstance(event, MachineResult):
            self.finished.setdefault(event.app, []).append(event)
            began = self._began.pop(key, None)
            took = "" if began is None else f" ({self.clock.monotonic() - began:.1f}s)"
            counted = event.outcome is not Outcome.NOOP  # totals count changes, not no-ops
            if self._progress is not None and event.app in self._tasks and counted:
                self._progress.update(
                    self._tasks[event.app],
                    advance=1,
                    last=self.redact(one_line(event.describe(), 60)),
                )
            quiet = event.outcome is Outcome.NOOP or (self.live and event.done)
            if not quiet and not self._repeated(event):
                self._print_line(f"{event.app}: {event.describe()}{took}")
        elif self._progress is not None and event.app in self._tasks:
            who = event.slot or event.machine_id or ""
            self._progress.update(self._tasks[event.app], last=f"{who} {event.phase}")

    def _print_line(self, line: str) -> None:
        if not self.live:  # logs: when it ended, to correlate with Fly's side
            line = f"{self._timestamp()} {line}"
        self.console.print(self.redact(line), markup=False)

    def _repeated(self, event: MachineResult) -> bool:
        """Whether ``event`` is one more of a problem already shown :data:`REPEATS_SHOWN`
        times (the same app, action, group, region, outcome and message): then it is only
        counted, and :meth:`stop` prints one line with the count.

        Why: a refused or capacity-starved plan of 10,000 creates ends in 10,000 identical
        lines otherwise.  Successful actions are never folded: each one is a log line with
        its own time and duration.
        """
        if event.done:
            return False
        key = (event.app, event.action, event.group, event.region, event.outcome, event.message)
        self._seen[key] += 1
        return self._seen[key] > REPEATS_SHOWN

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        for (app, action, group, region, outcome, _message), seen in self._seen.items():
            if seen > REPEATS_SHOWN:
                more = seen - REPEATS_SHOWN
                self._print_line(
                    f"{app}: {action} -> {outcome.value} for {more:,} more machines in "
                    f"{group or '?'}/{region} like the above"
                )
        self._seen.clear()

    def interrupting(self, grace: float) -> None:
        """The first Ctrl-C: say what happens next."""
        self.console.print(announcement(grace), markup=False)

    def summary(
        self,
        results: Sequence[AppResult],
        blocked_apps: Sequence[str],
        *,
        left: Mapping[str, int] | None = None,
        command: str = "apply",
        again: str = "run apply again to finish",
    ) -> None:
        """The summary table; ``left`` (an interrupted run) adds the changes never run, and
        the closing line says what is left and ``again``, what to do about it."""
        title = f"{command.capitalize()} summary"
        if left is not None:
            title += " (interrupted)"
        table = Table(title=title, title_justify="left")
        columns = ["app", "result", "ok", "no-op", "blocked", "failed"]
        if left is not None:
            columns.append("not run")
        for column in (*columns, "detail"):
            table.add_column(column)
        for result in results:
            counts = result.counts()
            ok = counts.get(Outcome.OK.value, 0)
            noop = counts.get(Outcome.NOOP.value, 0)
            blocked = sum(1 for r in result.results if r.outcome.blocked)
            failed = sum(1 for r in result.results if r.outcome.severity is Severity.FAILED)
            cells = [result.app, _verdict(result), str(ok), str(noop), str(blocked), str(failed)]
            if left is not None:
                not_run = left.get(result.app, 0)
                cells.append(str(not_run))
                if not_run:
                    cells[1] = "interrupted"
            cells.append(self.redact(result.message or _first_problem(result)))
            table.add_row(*cells)
        for app in blocked_apps:
            cells = [app, "not applied", "-", "-", "-", "-"] + (["-"] if left is not None else [])
            table.add_row(*cells, "desired-state file invalid")
        self.console.print(table)
        if left is not None:
            total = sum(left.values())
            where = ", ".join(f"{app}: {n}" for app, n in left.items() if n)
            self.console.print(
                f"interrupted: {total} planned machine change(s) not run"
                + (f" ({where})" if where else "")
                + f"; {again}",
                markup=False,
            )


def _verdict(result: AppResult) -> str:
    if result.failed:
        return f"failed ({result.error_class})"
    if result.refused:
        return "refused"
    if result.converged:
        return "converged"
    if result.lease_blocked:
        return "lease held"
    return "partial"


def _first_problem(result: AppResult) -> str:
    if result.refused and result.plan is not None and result.plan.refused is not None:
        return one_line(result.plan.refused.reason, 80)
    for r in result.results:
        if not r.done:
            return one_line(r.describe(), 80)
    return ""


async def apply_apps(
    apps: Sequence[DesiredApp],
    *,
    executor: Executor,
    reporter: Reporter,
    confirm: Callable[[Sequence[AppPlan]], bool],
    prune: bool | None = None,
    allow_empty: bool = False,
    interrupt: Interrupt | None = None,
) -> ApplyReport:
    """Plan every app, show the plans, ask ``confirm``, then execute all apps concurrently.

    An app whose machines cannot be listed gets a failed :class:`AppResult` and is not planned.
    With ``interrupt``, SIGINT/SIGTERM during execution drain it (see the module docstring);
    the signal handlers are installed only while machines are being changed (main thread).
    """
    observed: dict[str, Observed] = {}
    failed: list[AppResult] = []
    for desired in apps:
        try:
            observed[desired.app] = await observe_and_plan(
                desired, executor=executor, prune=prune, allow_empty=allow_empty
            )
        except FlyAPIError as exc:
            failed.append(
                AppResult(
                    app=desired.app,
                    error_class=exc.error_class,
                    message=one_line(f"listing machines failed: {exc}"),
                    request_id=exc.request_id,
                )
            )
    plans = tuple(o.plan for o in observed.values())
    errors = [PlanError(r.app, r.error_class or "error", r.message, r.request_id) for r in failed]
    reporter.plan(plans, errors)
    runnable = [o for o in observed.values() if o.plan.has_changes and o.plan.refused is None]
    # Refused plans go to the executor too: it runs nothing and reports each change refused.
    changing = [o for o in observed.values() if o.plan.has_changes]
    if runnable and not confirm(plans):
        return ApplyReport(plans=plans, results=tuple(failed), applied=False)

    by_app = {d.app: d for d in apps}
    results: dict[str, AppResult] = {}

    async def run(one: Observed) -> None:
        desired = by_app[one.plan.app]
        results[desired.app] = await execute_observed(one, desired, executor=executor)

    async def run_all() -> None:
        async with anyio.create_task_group() as work:
            for one in changing:
                work.start_soon(run, one)

    reporter.start({o.plan.app: len(o.plan.changes) for o in runnable})
    try:
        if interrupt is None:
            await run_all()
        else:
            await interruptible(run_all, interrupt, executor, reporter)
    finally:
        reporter.stop()
    left: dict[str, int] = {}
    for one in observed.values():
        app = one.plan.app
        if app in results:
            continue
        if interrupt is not None and interrupt.interrupted and one in changing:
            finished = tuple(reporter.finished.get(app, ()))
            left[app] = not_run(one.plan, finished)
            results[app] = AppResult(
                app=app, results=finished, plan=one.plan, relisted=one.relisted
            )
        else:  # no changes: nothing to execute
            results[app] = AppResult(app=app, plan=one.plan, relisted=one.relisted)
    ordered = tuple(results[o.plan.app] for o in observed.values()) + tuple(failed)
    interrupted = interrupt is not None and interrupt.interrupted
    return ApplyReport(
        plans=plans, results=ordered, applied=True, interrupted=interrupted, left=left
    )


def not_run(plan: AppPlan, finished: Sequence[MachineResult]) -> int:
    """How many of ``plan``'s changes an interrupted run never got to (``finished``: the
    results the reporter saw for its app)."""
    ran = sum(1 for r in finished if r.action != "noop")
    return max(0, len(plan.changes) - ran)


async def interruptible(
    run_all: Callable[[], Awaitable[None]],
    interrupt: Interrupt,
    executor: Executor,
    reporter: Reporter,
) -> None:
    """``run_all`` with the drain on the first signal and the abort on the second
    (:func:`controller.cli.interrupting.drained` on the executor's in-flight limiter)."""
    await drained(
        run_all,
        interrupt,
        limiter=executor.limiter,
        clock=executor.clock,
        announce=reporter.interrupting,
    )
