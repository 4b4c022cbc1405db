"""``apply`` as a command: load and select the apps, build the client and the executor, run
:func:`~controller.cli.apply.apply_apps` under the signals (:mod:`controller.cli.interrupting`),
print the summary, pick the exit code; ``apply --plan FILE`` goes to
:mod:`controller.cli.planfile`.

It sits above :mod:`controller.cli.apply` (the machinery ``make demo`` shares) and
:mod:`controller.cli.planfile`, which both import that machinery: no module imports its caller.
"""

from __future__ import annotations

import argparse
import random

import anyio

from controller.cli.apply import EXIT_ERROR, Reporter, apply_apps, exit_code
from controller.cli.client import client, settings
from controller.cli.confirming import confirmed
from controller.cli.desired import load, selected, unnamed_bad_files
from controller.cli.interrupting import Interrupt, with_signals
from controller.cli.planfile import apply_saved
from controller.cli.redacting import REDACTOR
from controller.cli.targeting import targeted
from controller.clock import SystemClock
from controller.core.errors import ConfigError
from controller.execution.executor import Executor
from controller.execution.rollout import ExecutorSettings

__all__ = ["cmd_apply"]


def cmd_apply(args: argparse.Namespace) -> int:
    """``apply`` (or ``apply --plan FILE``): the exit code (:mod:`controller.cli.apply` lists
    them)."""
    if args.lease_wait < 0:
        raise ConfigError("--lease-wait must be >= 0")
    if args.plan is not None:
        return _apply_saved(args)
    if args.grace < 0:
        raise ConfigError("--grace must be >= 0")
    loaded = load(args.dir)
    apps = targeted(selected(loaded, args.app), args)
    blocked = sorted(a for a in loaded.blocked if not args.app or a in args.app)
    if not args.app:  # a file whose app is unknown may hold any app: never "converged"
        blocked += unnamed_bad_files(loaded)
    reporter = Reporter(redact=REDACTOR.redact)
    interrupt = Interrupt(grace=args.grace)

    async def run() -> int:
        async with client(apps, embedded=args.embedded) as api:
            executor = Executor(
                api,
                clock=SystemClock(),
                rng=random.Random(),
                settings=ExecutorSettings.from_settings(settings(), lease_wait=args.lease_wait),
                on_event=reporter.event,
            )
            report = await apply_apps(
                apps,
                executor=executor,
                reporter=reporter,
                confirm=lambda _plans: confirmed(
                    yes=args.yes, verb="apply", question="Apply these changes?"
                ),
                prune=args.prune,
                allow_empty=args.allow_empty,
                interrupt=interrupt,
            )
        if report.interrupted:
            reporter.summary(report.results, blocked, left=report.left)
            return interrupt.exit_code
        if not report.applied:
            return EXIT_ERROR
        if report.has_changes or blocked or any(r.failed for r in report.results):
            reporter.summary(report.results, blocked)
        return exit_code(report.results, blocked_apps=blocked)

    return anyio.run(with_signals, run, interrupt)


def _apply_saved(args: argparse.Namespace) -> int:
    """``apply --plan FILE``: apps, groups and --prune come from the file."""
    if args.app or args.group or args.prune is not None or args.allow_empty:
        raise ConfigError(
            "--plan applies the saved plan's apps, groups and --prune/--allow-empty; "
            "do not pass --app, --group, --prune or --allow-empty with it"
        )
    return apply_saved(
        args.plan,
        loaded=load(args.dir),
        directory=args.dir,
        client=lambda apps: client(apps, embedded=args.embedded),
        lease_wait=args.lease_wait,
        redact=REDACTOR.redact,
    )
