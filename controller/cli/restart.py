"""``machine-reconciler restart DIR --app A [--group G] [--yes]``: a rolling restart.

Lists the app's machines, shows one ``↻ restart`` line per running managed machine of the
selected groups (:func:`controller.planning.restarting.restart_plan`), asks like ``apply``
(``yes`` on a terminal, ``--yes`` off one), then lets the executor roll them: ``/restart`` per
machine under its lease, in each group's ``max_unavailable`` window, health-gated with the
update waiter, halting the group on a machine that does not come back healthy.  429s from
Fly's per-machine restart limit are waited out, not failed
(:mod:`controller.execution.transitions`).

Exit codes (those of ``apply``): 0 every machine restarted (or nothing to restart); 1 error
(bad arguments, the app could not be listed, no confirmation); 3 partial (a halted rollout,
an unhealthy machine, a machine that changed meanwhile); 4 leases still held by someone else
after ``--lease-wait``.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio

from controller.cli.confirming import add_embedded_flag, add_lease_wait_flag, confirmed
from controller.cli.targeting import targeted
from controller.clock import SystemClock
from controller.core.errors import ConfigError, FlyAPIError
from controller.execution.reconciler import list_desired
from controller.execution.rollout import ExecutorSettings
from controller.flyapi import MachinesClient
from controller.model.desired import DesiredApp
from controller.planning.render import render
from controller.planning.restarting import restart_plan

EXIT_CONVERGED = 0
EXIT_ERROR = 1

__all__ = ["add_restart_parser", "restart"]

ClientFactory = Callable[[Sequence[DesiredApp]], AbstractAsyncContextManager[MachinesClient]]


def add_restart_parser(sub: Any, default_dir: Path) -> None:
    """The ``restart`` subcommand."""
    cmd = sub.add_parser(
        "restart",
        help="rolling restart of an app's machines (in each group's window, health-gated)",
        description="Restart every running managed machine of APP (or of --group): under its "
        "lease, max_unavailable at a time, each waited for until healthy; an unhealthy "
        "machine halts its group.",
    )
    cmd.add_argument("dir", nargs="?", type=Path, default=default_dir, metavar="DIR")
    cmd.add_argument("--app", required=True, help="the app whose machines to restart")
    cmd.add_argument(
        "--group",
        action="append",
        metavar="GROUP",
        help="only this group's machines (repeatable)",
    )
    cmd.add_argument("--yes", action="store_true", help="restart without asking")
    add_lease_wait_flag(cmd)
    add_embedded_flag(cmd, what="against the in-process emulator (a demonstration; no token)")


def restart(
    args: argparse.Namespace,
    desired: DesiredApp,
    *,
    client: ClientFactory,
    redact: Callable[[str], str],
) -> int:
    """Run ``restart`` for one app; the exit code."""
    from controller.cli.apply import Reporter, exit_code  # rich: only when a restart runs
    from controller.execution.executor import Executor

    if args.lease_wait < 0:
        raise ConfigError("--lease-wait must be >= 0")
    [target] = targeted([desired], args)
    if target.paused is not None:
        raise ConfigError(f"app {desired.app} is paused ({target.paused}): nothing restarted")
    groups = list(args.group or ())

    async def run() -> int:
        async with client([desired]) as api:
            try:
                live, missing = await list_desired(api, desired)
            except FlyAPIError as exc:
                print(redact(f"machine-reconciler: error: {desired.app}: {exc}"), file=sys.stderr)
                return EXIT_ERROR
            if missing:
                print(f"{desired.app}: the app does not exist yet: nothing to restart")
                return EXIT_CONVERGED
            proposal = restart_plan(desired, live, groups)
            sys.stdout.write(redact(render(proposal.plan)))
            for machine in proposal.skipped:
                print(f"  {machine.id} {machine.slot}: {machine.state}, not restarted")
            if not proposal.plan.actions:
                return EXIT_CONVERGED
            if not confirmed(yes=args.yes, verb="restart", question="Restart these machines?"):
                return EXIT_ERROR
            reporter = Reporter(redact=redact)
            executor = Executor(
                api,
                clock=SystemClock(),
                rng=random.Random(),
                settings=ExecutorSettings(lease_wait=args.lease_wait),
                on_event=reporter.event,
            )
            reporter.start({desired.app: len(proposal.plan.actions)})
            try:
                result = await executor.execute(proposal.plan, desired)
            finally:
                reporter.stop()
            reporter.summary([result], ())
            return exit_code([result])

    return anyio.run(run)
