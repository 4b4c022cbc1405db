"""``machine-reconciler restart DIR --app A [--group G] [--yes]``: a rolling restart.

Lists the app's machines, shows one ``↻ restart`` line per running managed machine of the
selected groups (:func:`controller.planning.restarting.restart_plan`), asks like ``apply``
(``yes`` on a terminal, ``--yes`` off one), then lets the executor roll them: ``/restart`` per
machine under its lease, in each group's ``max_unavailable`` window, health-gated with the
update waiter, halting the group on a machine that does not come back healthy.  429s from
Fly's per-machine restart limit are waited out, not failed
(:mod:`controller.execution.transitions`).

**Ctrl-C / SIGTERM** drain it as they drain ``apply`` (:mod:`controller.cli.interrupting`):
no new restart starts, the ones in flight finish within ``--grace``, every lease is released,
``interrupted`` and the summary (with a "not run" column) are printed, exit 130 / 143; a second
signal stops at once (leases are still released).

``--output json``: one document on stdout (:mod:`controller.cli.jsonout`): a ``restart``
record per machine to restart, a ``noop`` record per one that is not running, and ``results``
once it ran; the text goes to stderr.

Exit codes (those of ``apply``): 0 every machine restarted (or nothing to restart); 1 error
(bad arguments, the app could not be listed, no confirmation); 3 partial (a halted rollout,
an unhealthy machine, a machine that changed meanwhile); 4 leases still held by someone else
after ``--lease-wait``; 130 / 143 interrupted.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from typing import Any

from controller.cli.client import client
from controller.cli.confirming import confirmed
from controller.cli.desired import one_app
from controller.cli.jsonout import emit, from_result
from controller.cli.oneapp import ClientFactory, OneAppRun, run_one_app
from controller.cli.redacting import REDACTOR
from controller.cli.targeting import targeted
from controller.clock import SystemClock
from controller.core.errors import ConfigError, FlyAPIError
from controller.execution.outcomes import AppResult
from controller.execution.reconciler import list_desired
from controller.execution.rollout import ExecutorSettings
from controller.flyapi import MachinesClient
from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp
from controller.planning.plan import AppPlan
from controller.planning.render import (
    Entry,
    PlanError,
    machine_record,
    render,
    summarise_runs,
    to_document,
)
from controller.planning.restarting import RestartPlan, restart_plan

EXIT_CONVERGED = 0
EXIT_ERROR = 1

__all__ = ["cmd_restart", "restart", "restart_document"]


def cmd_restart(args: argparse.Namespace) -> int:
    """``restart``: the exit code (see the module docstring)."""
    return restart(
        args,
        one_app(args),
        client=lambda apps: client(apps, embedded=args.embedded),
        redact=REDACTOR.redact,
    )


def restart(
    args: argparse.Namespace,
    desired: DesiredApp,
    *,
    client: ClientFactory,
    redact: Callable[[str], str],
) -> int:
    """Run ``restart`` for one app; the exit code."""

    def not_paused() -> None:
        [target] = targeted([desired], args)
        if target.paused is not None:
            raise ConfigError(f"app {desired.app} is paused ({target.paused}): nothing restarted")

    return run_one_app(_Restart, args, desired, client=client, redact=redact, check=not_paused)


class _Restart(OneAppRun):
    """One ``restart`` run: list, show, confirm, roll, report (text or ``--output json``)."""

    async def run(self) -> int:
        app = self.desired.app
        async with self.client([self.desired]) as api:
            try:
                live, missing = await list_desired(api, self.desired)
            except FlyAPIError as exc:
                message = self.redact(f"listing machines failed: {exc}")
                print(f"machine-reconciler: error: {app}: {message}", file=sys.stderr)
                if self.json:
                    error = PlanError(app, exc.error_class, message, exc.request_id)
                    emit(to_document([], [error]))
                return EXIT_ERROR
            if missing:
                self.say(f"{app}: the app does not exist yet: nothing to restart")
                if self.json:
                    emit(to_document(AppPlan(app=app, actions=())))
                return EXIT_CONVERGED
            proposal = restart_plan(self.desired, live, list(self.args.group or ()))
            self.text.write(self.redact(render(proposal.plan)))
            for line in summarise_runs(_skipped_entry(m) for m in proposal.skipped):
                self.say(line)
            document = restart_document(proposal)
            if not proposal.plan.actions:
                if self.json:
                    emit(document)
                return EXIT_CONVERGED
            ask_on = sys.stderr if self.json else None
            question = "Restart these machines?"
            if not confirmed(yes=self.args.yes, verb="restart", question=question, ask_on=ask_on):
                if self.json:
                    emit(document)
                return EXIT_ERROR
            return await self.roll(api, proposal, document)

    async def roll(
        self, api: MachinesClient, proposal: RestartPlan, document: dict[str, Any]
    ) -> int:
        """Execute the restarts under the drain (first signal) and the abort (second)."""
        from controller.cli.apply import Reporter, exit_code, interruptible, not_run
        from controller.execution.executor import Executor

        app = self.desired.app
        reporter = Reporter(self.text, redact=self.redact)
        executor = Executor(
            api,
            clock=SystemClock(),
            rng=random.Random(),
            settings=ExecutorSettings(lease_wait=self.args.lease_wait),
            on_event=reporter.event,
        )
        done: list[AppResult] = []

        async def run_all() -> None:
            done.append(await executor.execute(proposal.plan, self.desired))

        reporter.start({app: len(proposal.plan.actions)})
        try:
            await interruptible(run_all, self.interrupt, executor, reporter)
        finally:
            reporter.stop()
        finished = tuple(reporter.finished.get(app, ()))
        result = done[0] if done else AppResult(app=app, results=finished, plan=proposal.plan)
        if self.interrupt.interrupted:
            left = {app: 0 if done else not_run(proposal.plan, finished)}
            again = "restart again (with --group to narrow it) restarts every running machine"
            reporter.summary([result], (), left=left, command="restart", again=again)
        else:
            reporter.summary([result], (), command="restart")
        if self.json:
            emit(document, [from_result(r, self.redact) for r in result.results])
        return self.interrupt.exit_code if self.interrupt.interrupted else exit_code([result])


def _skipped_entry(machine: LiveMachine) -> Entry:
    """A machine that is not running (not restarted), for a listing that counts long runs."""
    state = machine.state
    return Entry(
        state,
        [f"  {machine.id} {machine.slot}: {state}, not restarted"],
        lambda n: f"  {n:,} more machines {state}, not restarted",
    )


def restart_document(proposal: RestartPlan) -> dict[str, Any]:
    """``restart --output json``'s document: plan's, with a ``noop`` record per machine that is
    not running (not restarted), counted in ``summary.noop``."""
    document = to_document(proposal.plan)
    app = proposal.plan.app
    document["machines"] += [
        machine_record(
            app=app,
            action="noop",
            machine_id=m.id,
            slot=m.slot,
            group=m.group,
            region=m.region,
            reason=f"{m.state}: not restarted",
            current_version=m.version,
        )
        for m in proposal.skipped
    ]
    document["summary"]["noop"] += len(proposal.skipped)
    return document
