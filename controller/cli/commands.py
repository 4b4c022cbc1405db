"""The composition root: parses arguments and hands each command to its module, imported only
when that command runs, so ``--help``, ``--version`` and ``validate`` start without the API
client, the settings model, ``rich`` or the executor (see :func:`_dispatch`).  Nothing below
this module reads ``sys.argv`` or the environment directly.

User mistakes (a bad file, a bad setting, a missing token) end in one clear line on stderr and
a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controller import __version__
from controller.cli.confirming import (
    add_embedded_flag,
    add_grace_flag,
    add_lease_wait_flag,
    add_output_flag,
)
from controller.cli.redacting import REDACTOR, error
from controller.cli.run import add_run_parser, cmd_run
from controller.core.errors import ConfigError
from controller.observability.logging import configure_logging

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse.error() exits with it

DEFAULT_DIR = Path("desired_state")

_EPILOG = """\
exit codes:
  validate   0 every file is valid; 1 at least one file is not
  plan       0 success (with --detailed-exitcode: no changes); 1 error (an app could
             not be listed, or its file is invalid: named in the summary and in the
             JSON errors list); 2 changes present or detect_only drift (only with
             --detailed-exitcode)
  apply      0 converged; 1 error (bad settings, auth, API failure, bad request);
             3 partial (capacity, quota, volume, halted rollout, or an app whose file
             is broken while the others applied); 4 refused by a safety budget, or
             leases still held by someone else after --lease-wait, or (--plan) a
             machine, the desired files or a secret changed since the saved plan;
             130 interrupted (Ctrl-C: operations in flight finish within --grace,
             leases released), 143 on SIGTERM
  adopt      0 adopted (or nothing to adopt); 1 error or no confirmation;
             4 a machine changed since listed, or its lease stayed held; 130 / 143
             interrupted like apply (the adoption in flight finishes within --grace)
  restart    0 every machine restarted (or none running); 1 error or no
             confirmation; 3 partial (halted rollout, unhealthy, changed meanwhile);
             4 leases still held by someone else after --lease-wait; 130 / 143
             interrupted like apply (restarts in flight finish within --grace)
  emulator   0 stopped cleanly; 1 bad arguments
  (argparse usage errors exit 2)

settings (environment):
  FLY_API_TOKEN                         the Fly API token (never logged)
  MACHINE_RECONCILER_API_TOKEN_FILE     or: a file holding the token
  MACHINE_RECONCILER_API_URL            default https://api.machines.dev
"""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (also used by tests to check the chart's and image's args)."""
    parser = argparse.ArgumentParser(
        prog="machine-reconciler",
        description="Keep Fly.io Machines equal to declarative desired-state files.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: WARNING)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser(
        "validate",
        help="check desired-state files (no API access)",
        description="Check every desired-state file; errors name file, line, column and field.",
    )
    validate.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, metavar="DIR")

    plan_cmd = sub.add_parser(
        "plan",
        help="show what apply would change",
        description="List live machines and show the plan that would make them match DIR.",
    )
    plan_cmd.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, metavar="DIR")
    plan_cmd.add_argument("--app", action="append", help="only this app (repeatable)")
    _add_targeting_arguments(plan_cmd, prune=True)
    plan_cmd.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there are no changes, 2 when there are (or detect_only drift), "
        "1 on error",
    )
    plan_cmd.add_argument(
        "--output",
        choices=["text", "json"],
        default="text",
        help="text (terraform-like, default) or json (format_version 2, schema: "
        "controller/planning/plan-output.schema.json)",
    )
    plan_cmd.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="also save the plan (JSON, no secrets) for apply --plan FILE",
    )
    plan_cmd.add_argument(
        "--embedded",
        action="store_true",
        help="plan against the in-process emulator seeded with a drifted fleet (no token)",
    )
    add_run_parser(sub)
    _add_adopt_parser(sub)
    _add_restart_parser(sub)

    apply_cmd = sub.add_parser(
        "apply",
        help="make the live machines match DIR (one-shot reconcile)",
        description="Plan, confirm, then apply: leases, current_version, rolling updates.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply_cmd.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, metavar="DIR")
    apply_cmd.add_argument("--app", action="append", help="only this app (repeatable)")
    _add_targeting_arguments(apply_cmd, prune=False)
    apply_cmd.add_argument("--yes", action="store_true", help="apply without asking")
    apply_cmd.add_argument(
        "--plan",
        type=Path,
        metavar="FILE",
        help="apply exactly this saved plan (plan --out); exit 4 if anything changed since",
    )
    apply_cmd.add_argument(
        "--prune",
        action="store_true",
        default=None,
        help="destroy managed machines of groups no longer declared (overrides the files)",
    )
    apply_cmd.add_argument(
        "--allow-empty", action="store_true", help="allow a plan that leaves an app empty"
    )
    add_lease_wait_flag(apply_cmd)
    add_grace_flag(apply_cmd, what="machine operations")
    apply_cmd.add_argument(
        "--embedded",
        action="store_true",
        help="apply to the in-process emulator seeded with a drifted fleet (no token)",
    )

    emu = sub.add_parser(
        "emulator",
        help="serve the Fly Machines API emulator over HTTP",
        description="Serve the Fly Machines API emulator (the /v1 paths and /_emulator/ control).",
    )
    emu.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    emu.add_argument("--port", type=int, default=4280, help="TCP port (default: 4280)")
    emu.add_argument("--scenario", type=Path, help="YAML/JSON file: behaviour, seed data, faults")
    emu.add_argument("--token", help="accept only this bearer token (default: any non-empty one)")
    emu.add_argument("--seed", type=int, default=0, help="random seed for ids and faults")

    sub.add_parser(
        "demo",
        help="serve the embedded emulator, seed a drifted fleet, plan, apply, plan again",
        description="A self-contained demonstration against the embedded emulator on loopback: "
        "it changes only the emulator's machines.",
    )
    return parser


def _add_targeting_arguments(parser: argparse.ArgumentParser, *, prune: bool) -> None:
    """``--group`` (repeatable); with ``prune``, also ``plan --prune`` (a preview of apply's)."""
    parser.add_argument(
        "--group",
        action="append",
        metavar="GROUP",
        help="only this group's machines (repeatable); other groups are left alone",
    )
    if prune:
        parser.add_argument(
            "--prune",
            action="store_true",
            default=None,
            help="preview apply --prune: also destroy managed machines of undeclared groups",
        )


def _add_adopt_parser(sub: Any) -> None:
    """The ``adopt`` subcommand (:mod:`controller.cli.adopt`)."""
    adopt_cmd = sub.add_parser(
        "adopt",
        help="take over unmanaged machines (e.g. made by fly deploy) into free slots",
        description="Match machines without reconciler/managed metadata to the free slots of "
        "APP's groups (same config first, then same image), show it, and on confirmation "
        "write the slot metadata under a lease with current_version.",
    )
    adopt_cmd.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    adopt_cmd.add_argument("--app", required=True, help="the app whose machines to adopt")
    adopt_cmd.add_argument("--yes", action="store_true", help="adopt without asking")
    add_lease_wait_flag(adopt_cmd)
    add_grace_flag(adopt_cmd, what="the adoption")
    add_output_flag(adopt_cmd)
    add_embedded_flag(adopt_cmd, what="against the in-process emulator (a demonstration; no token)")


def _add_restart_parser(sub: Any) -> None:
    """The ``restart`` subcommand (:mod:`controller.cli.restart`)."""
    cmd = sub.add_parser(
        "restart",
        help="rolling restart of an app's machines (in each group's window, health-gated)",
        description="Restart every running managed machine of APP (or of --group): under its "
        "lease, max_unavailable at a time, each waited for until healthy; an unhealthy "
        "machine halts its group.",
    )
    cmd.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, metavar="DIR")
    cmd.add_argument("--app", required=True, help="the app whose machines to restart")
    cmd.add_argument(
        "--group",
        action="append",
        metavar="GROUP",
        help="only this group's machines (repeatable)",
    )
    cmd.add_argument("--yes", action="store_true", help="restart without asking")
    add_lease_wait_flag(cmd)
    add_grace_flag(cmd, what="restarts")
    add_output_flag(cmd)
    add_embedded_flag(cmd, what="against the in-process emulator (a demonstration; no token)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``machine-reconciler`` console script."""
    args = build_parser().parse_args(argv)
    if args.command != "run":  # the daemon configures its own (JSON) logging
        configure_logging(fmt="text", level=args.log_level, redactor=REDACTOR)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:  # before or after execution (which handles its own Ctrl-C)
        print("\ninterrupted: nothing more was started", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    """Run ``args.command``, importing its module now: each command pays for its own imports."""
    if args.command == "validate":
        from controller.cli.desired import cmd_validate

        return cmd_validate(args)
    if args.command == "plan":
        from controller.cli.plan import cmd_plan

        return cmd_plan(args)
    if args.command == "apply":
        from controller.cli.apply_command import cmd_apply

        return cmd_apply(args)
    if args.command == "emulator":
        return _cmd_emulator(args)
    if args.command == "run":  # its module imports the daemon's own in cmd_run
        return cmd_run(args)
    if args.command == "adopt":
        from controller.cli.adopt import cmd_adopt

        return cmd_adopt(args)
    if args.command == "restart":
        from controller.cli.restart import cmd_restart

        return cmd_restart(args)
    from controller.cli.demo import run_demo  # args.command == "demo" (argparse enforces it)

    return run_demo()


def _cmd_emulator(args: argparse.Namespace) -> int:
    from controller.emulator import run_server

    if args.scenario is not None and not args.scenario.is_file():
        raise ConfigError(f"scenario file not found: {args.scenario}")
    run_server(args.host, args.port, scenario=args.scenario, token=args.token, seed=args.seed)
    return EXIT_OK
