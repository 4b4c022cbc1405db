"""The composition root: parses arguments, builds settings, clients and clocks, maps outcomes
to exit codes.  Nothing below this module reads ``sys.argv`` or the environment directly.

User mistakes (a bad file, a bad setting, a missing token) end in one clear line on stderr and
a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from pydantic import SecretStr, ValidationError

from controller import __version__
from controller.cli.adopt import add_adopt_parser, adoptable_lines, adoptable_records
from controller.cli.confirming import add_grace_flag, add_lease_wait_flag, confirmed
from controller.cli.restart import add_restart_parser
from controller.cli.run import add_run_parser, cmd_run
from controller.cli.targeting import add_targeting_arguments, targeted
from controller.clock import SystemClock
from controller.core.errors import ConfigError, FlyAPIError
from controller.execution.reconciler import list_desired
from controller.flyapi import MachinesClient
from controller.loading.loader import LoadResult, load_dir
from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp
from controller.observability.logging import Redactor, configure_logging
from controller.planning.adopt import match
from controller.planning.normalize import sensitive_values
from controller.planning.plan import AppPlan, plan
from controller.planning.render import PlanError, render, to_document
from controller.settings import Settings

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2  # plan --detailed-exitcode: changes present
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
    add_targeting_arguments(plan_cmd, prune=True)
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
    add_adopt_parser(sub, DEFAULT_DIR)
    add_restart_parser(sub, DEFAULT_DIR)

    apply_cmd = sub.add_parser(
        "apply",
        help="make the live machines match DIR (one-shot reconcile)",
        description="Plan, confirm, then apply: leases, current_version, rolling updates.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    apply_cmd.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR, metavar="DIR")
    apply_cmd.add_argument("--app", action="append", help="only this app (repeatable)")
    add_targeting_arguments(apply_cmd, prune=False)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``machine-reconciler`` console script."""
    args = build_parser().parse_args(argv)
    if args.command != "run":  # the daemon configures its own (JSON) logging
        configure_logging(fmt="text", level=args.log_level, redactor=REDACTOR)
    try:
        if args.command == "validate":
            return _cmd_validate(args)
        if args.command == "plan":
            return _cmd_plan(args)
        if args.command == "apply":
            return _cmd_apply(args)
        if args.command == "emulator":
            return _cmd_emulator(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "adopt":
            return _cmd_adopt(args)
        if args.command == "restart":
            return _cmd_restart(args)
        from controller.cli.demo import run_demo  # args.command == "demo" (argparse enforces it)

        return run_demo()
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:  # before or after execution (which handles its own Ctrl-C)
        print("\ninterrupted: nothing more was started", file=sys.stderr)
        return 130


#: Masks the token and every desired-state env value in whatever the one-shot commands log.
REDACTOR = Redactor()


def _error(message: str) -> None:
    print(f"machine-reconciler: error: {REDACTOR.redact(message)}", file=sys.stderr)


# ---------------------------------------------------------------------------------- validate


def _load(directory: Path) -> LoadResult:
    if not directory.is_dir():
        raise ConfigError(f"desired-state directory not found: {directory}")
    loaded = load_dir(directory)
    REDACTOR.update(sensitive_values(loaded.apps.values()))
    for error in loaded.errors:
        print(str(error), file=sys.stderr)
    return loaded


def unnamed_bad_files(loaded: LoadResult) -> list[str]:
    """Files with errors that name no app (empty, a list, unreadable, not UTF-8), labelled."""
    claimed = {file for files in loaded.blocked.values() for file in files}
    bad = sorted({e.file for e in loaded.errors} - claimed)
    return [f"{Path(file).name} (no app name)" for file in bad]


def _cmd_validate(args: argparse.Namespace) -> int:
    loaded = _load(args.dir)
    if not loaded.ok:
        blocked = ", ".join(sorted(loaded.blocked)) or "(unnamed)"
        _error(f"{len(loaded.errors)} error(s); blocked app(s): {blocked}")
        return EXIT_ERROR
    print(f"ok: {len(loaded.apps)} app(s) in {len(loaded.files)} file(s)")
    return EXIT_OK


# -------------------------------------------------------------------------------------- plan


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {field}: {first['msg']}") from None


@asynccontextmanager
async def _client(apps: Sequence[DesiredApp], *, embedded: bool) -> AsyncIterator[MachinesClient]:
    """The API client: against Fly per the settings, or against the embedded emulator."""
    if embedded:
        from controller.cli.demo import EMBEDDED_TOKEN, EMBEDDED_URL, embedded_emulator
        from controller.emulator import EmulatorTransport

        emulator = await embedded_emulator(apps)
        settings = Settings(api_url=EMBEDDED_URL, api_token=SecretStr(EMBEDDED_TOKEN))
        transport = EmulatorTransport(emulator)
        client = MachinesClient.from_settings(
            settings, clock=SystemClock(), rng=random.Random(), transport=transport
        )
    else:
        settings = _settings()
        if settings.api_token is not None:
            REDACTOR.add_secrets(settings.api_token.get_secret_value())
        client = MachinesClient.from_settings(settings, clock=SystemClock(), rng=random.Random())
    async with client:
        yield client


def _selected(loaded: LoadResult, names: Sequence[str] | None) -> list[DesiredApp]:
    if not names:
        return list(loaded.apps.values())
    unknown = [n for n in names if n not in loaded.apps and n not in loaded.blocked]
    if unknown:
        raise ConfigError(f"no desired-state file declares app(s): {', '.join(unknown)}")
    return [loaded.apps[n] for n in names if n in loaded.apps]


async def _plan_apps(
    apps: Sequence[DesiredApp],
    *,
    embedded: bool,
    prune: bool | None = None,
    lives: dict[str, tuple[LiveMachine, ...]] | None = None,
) -> tuple[list[AppPlan], list[PlanError]]:
    """Plan every app; ``lives`` (when given) receives each app's live machines."""
    plans: list[AppPlan] = []
    failures: list[PlanError] = []
    async with _client(apps, embedded=embedded) as client:
        for desired in apps:
            try:
                live, missing = await list_desired(client, desired)
            except FlyAPIError as exc:
                failures.append(
                    PlanError(
                        app=desired.app,
                        error_class=exc.error_class,
                        message=REDACTOR.redact(f"listing machines failed: {exc}"),
                        request_id=exc.request_id,
                    )
                )
                continue
            plans.append(plan(desired, live, prune=prune, app_missing=missing))
            if lives is not None:
                lives[desired.app] = live
    return plans, failures


def _invalid(loaded: LoadResult, names: Sequence[str] | None) -> list[PlanError]:
    """The selected apps whose desired-state file is invalid, as plan errors."""
    return [
        PlanError(
            app=app,
            error_class="invalid_desired_state",
            message=f"desired-state file invalid: {', '.join(files)} (see the errors above)",
        )
        for app, files in sorted(loaded.blocked.items())
        if not names or app in names
    ]


def _cmd_plan(args: argparse.Namespace) -> int:
    loaded = _load(args.dir)
    apps = targeted(_selected(loaded, args.app), args)
    lives: dict[str, tuple[LiveMachine, ...]] = {}
    plans, failures = anyio.run(
        lambda: _plan_apps(apps, embedded=args.embedded, prune=args.prune, lives=lives)
    )
    errors = [*failures, *_invalid(loaded, args.app)]
    if args.out is not None and not errors:  # a plan missing an app is not saved
        from controller.cli.planfile import write_plan

        by_app = {a.app: a for a in apps}
        write_plan(args.out, [(by_app[p.app], p, lives[p.app]) for p in plans], prune=args.prune)
    by_name = {a.app: a for a in apps}
    adoptable = [match(by_name[p.app], lives[p.app]) for p in plans if p.unmanaged]
    if args.output == "json":
        document = to_document(plans, errors)
        document["adoptable"] = adoptable_records(adoptable)
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render(plans, errors))
        for line in adoptable_lines(adoptable, str(args.dir)):
            print(line)
    for failure in failures:
        _error(f"{failure.app}: {failure.message}")
    if errors or (not loaded.ok and not args.app):
        return EXIT_ERROR
    if args.detailed_exitcode and any(p.has_changes or p.drift for p in plans):
        return EXIT_CHANGES  # detect_only drift counts: the fleet is not as declared
    return EXIT_OK


# ------------------------------------------------------------------------------------- apply


def _cmd_apply(args: argparse.Namespace) -> int:
    from controller.cli.apply import EXIT_ERROR as APPLY_ERROR
    from controller.cli.apply import Reporter, apply_apps, exit_code
    from controller.cli.interrupting import Interrupt, with_signals
    from controller.execution.executor import Executor
    from controller.execution.rollout import ExecutorSettings

    if args.lease_wait < 0:
        raise ConfigError("--lease-wait must be >= 0")
    if args.plan is not None:
        return _cmd_apply_saved(args)
    if args.grace < 0:
        raise ConfigError("--grace must be >= 0")
    loaded = _load(args.dir)
    apps = targeted(_selected(loaded, args.app), args)
    blocked = sorted(a for a in loaded.blocked if not args.app or a in args.app)
    if not args.app:  # a file whose app is unknown may hold any app: never "converged"
        blocked += unnamed_bad_files(loaded)
    reporter = Reporter(redact=REDACTOR.redact)
    interrupt = Interrupt(grace=args.grace)

    async def run() -> int:
        async with _client(apps, embedded=args.embedded) as client:
            executor = Executor(
                client,
                clock=SystemClock(),
                rng=random.Random(),
                settings=ExecutorSettings.from_settings(_settings(), lease_wait=args.lease_wait),
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
            return APPLY_ERROR
        if report.has_changes or blocked or any(r.failed for r in report.results):
            reporter.summary(report.results, blocked)
        return exit_code(report.results, blocked_apps=blocked)

    return anyio.run(with_signals, run, interrupt)


def _one_app(args: argparse.Namespace) -> DesiredApp:
    """The ``--app`` of a one-app command (``adopt``, ``restart``); a bad file is an error."""
    loaded = _load(args.dir)
    if args.app in loaded.blocked:
        raise ConfigError(f"the desired-state file of app {args.app} is invalid")
    [desired] = _selected(loaded, [args.app])
    return desired


def _cmd_adopt(args: argparse.Namespace) -> int:
    from controller.cli.adopt import adopt

    return adopt(
        args,
        _one_app(args),
        client=lambda apps: _client(apps, embedded=args.embedded),
        redact=REDACTOR.redact,
    )


def _cmd_restart(args: argparse.Namespace) -> int:
    from controller.cli.restart import restart

    return restart(
        args,
        _one_app(args),
        client=lambda apps: _client(apps, embedded=args.embedded),
        redact=REDACTOR.redact,
    )


def _cmd_apply_saved(args: argparse.Namespace) -> int:
    """``apply --plan FILE``: apps, groups and --prune come from the file."""
    from controller.cli.planfile import apply_saved

    if args.app or args.group or args.prune is not None or args.allow_empty:
        raise ConfigError(
            "--plan applies the saved plan's apps, groups and --prune/--allow-empty; "
            "do not pass --app, --group, --prune or --allow-empty with it"
        )
    return apply_saved(
        args.plan,
        loaded=_load(args.dir),
        directory=args.dir,
        client=lambda apps: _client(apps, embedded=args.embedded),
        lease_wait=args.lease_wait,
        redact=REDACTOR.redact,
    )


# ---------------------------------------------------------------------------------- emulator


def _cmd_emulator(args: argparse.Namespace) -> int:
    from controller.emulator import run_server

    if args.scenario is not None and not args.scenario.is_file():
        raise ConfigError(f"scenario file not found: {args.scenario}")
    run_server(args.host, args.port, scenario=args.scenario, token=args.token, seed=args.seed)
    return EXIT_OK
