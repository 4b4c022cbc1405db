"""``apply``: observe and plan every selected app, confirm, execute, report, pick an exit code.

The CLI (and ``make demo``) call :func:`apply_apps`; the executor does the work per app, all
apps concurrently and sharing its ``max_in_flight`` limiter.  Progress goes to a
:class:`Reporter`: a live ``rich`` progress display on a terminal, one plain line per finished
action otherwise (CI logs, journald).  :func:`exit_code` is the single mapping from results to
the documented exit codes:

====  ===============================================================================
0     converged: every action ended ok or no-op
1     error: auth, an API failure while listing, a bad request, an unexpected error
3     partial: some machines blocked by capacity, quota, a volume, a halted rollout, a
      conflict requeue, or an app whose desired-state file is broken (the others applied)
4     refused by a safety budget, or leases still held by someone else after --lease-wait
====  ===============================================================================

When several apply, the most severe wins in the order 1, 4, 3, 0.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
)
from rich.table import Table

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
from controller.execution.reconciler import Observed, observe_and_plan
from controller.model.desired import DesiredApp
from controller.planning.plan import AppPlan
from controller.planning.render import render

PLAIN_WIDTH = 160
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
    """What an apply did: the plans shown, each app's result, and apps it could not plan."""

    plans: tuple[AppPlan, ...]
    results: tuple[AppResult, ...]
    applied: bool

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
    ) -> None:
        self.stream = stream or sys.stdout
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

    def plan(self, plans: Sequence[AppPlan]) -> None:
        if self.show_plan:
            self.console.print(render(plans), markup=False, end="")

    def start(self, totals: Mapping[str, int]) -> None:
        if not self.live:
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            console=self.console,
        )
        self._progress.start()
        for app, total in totals.items():
            self._tasks[app] = self._progress.add_task(app, total=total, last="")

    def event(self, event: Event) -> None:
        if isinstance(event, MachineResult):
            counted = event.outcome is not Outcome.NOOP  # totals count changes, not no-ops
            if self._progress is not None and event.app in self._tasks and counted:
                self._progress.update(
                    self._tasks[event.app],
                    advance=1,
                    last=self.redact(one_line(event.describe(), 60)),
                )
            quiet = event.outcome is Outcome.NOOP or (self.live and event.done)
            if not quiet:
                self.console.print(self.redact(f"{event.app}: {event.describe()}"), markup=False)
        elif self._progress is not None and event.app in self._tasks:
            who = event.slot or event.machine_id or ""
            self._progress.update(self._tasks[event.app], last=f"{who} {event.phase}")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def summary(self, results: Sequence[AppResult], blocked_apps: Sequence[str]) -> None:
        table = Table(title="Apply summary", title_justify="left")
        for column in ("app", "result", "ok", "no-op", "blocked", "failed", "detail"):
            table.add_column(column)
        for result in results:
            counts = result.counts()
            ok = counts.get(Outcome.OK.value, 0)
            noop = counts.get(Outcome.NOOP.value, 0)
            blocked = sum(1 for r in result.results if r.outcome.blocked)
            failed = sum(1 for r in result.results if r.outcome.severity is Severity.FAILED)
            table.add_row(
                result.app,
                _verdict(result),
                str(ok),
                str(noop),
                str(blocked),
                str(failed),
                self.redact(result.message or _first_problem(result)),
            )
        for app in blocked_apps:
            table.add_row(app, "not applied", "-", "-", "-", "-", "desired-state file invalid")
        self.console.print(table)


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
) -> ApplyReport:
    """Plan every app, show the plans, ask ``confirm``, then execute all apps concurrently.

    An app whose machines cannot be listed gets a failed :class:`AppResult` and is not planned.
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
    reporter.plan(plans)
    runnable = [o for o in observed.values() if o.plan.has_changes and o.plan.refused is None]
    # Refused plans go to the executor too: it runs nothing and reports each change refused.
    changing = [o for o in observed.values() if o.plan.has_changes]
    if runnable and not confirm(plans):
        return ApplyReport(plans=plans, results=tuple(failed), applied=False)

    by_app = {d.app: d for d in apps}
    results: dict[str, AppResult] = {}

    async def run(one: Observed) -> None:
        desired = by_app[one.plan.app]
        results[desired.app] = await executor.execute(one.plan, desired, relisted=one.relisted)

    reporter.start({o.plan.app: len(o.plan.changes) for o in runnable})
    try:
        async with anyio.create_task_group() as tg:
            for one in changing:
                tg.start_soon(run, one)
    finally:
        reporter.stop()
    for one in observed.values():
        if one.plan.app not in results:  # no changes: nothing to execute
            results[one.plan.app] = AppResult(
                app=one.plan.app, plan=one.plan, relisted=one.relisted
            )
    ordered = tuple(results[o.plan.app] for o in observed.values()) + tuple(failed)
    return ApplyReport(plans=plans, results=ordered, applied=True)
