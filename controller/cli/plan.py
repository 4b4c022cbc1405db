"""``plan``: list every selected app's machines and show (or save) the plan.

Exit codes: 0 success (with ``--detailed-exitcode``: no changes); 1 an app could not be listed,
its file is invalid, or a bad argument; 2 changes present or ``detect_only`` drift (only with
``--detailed-exitcode``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import anyio

from controller.cli.adopt import adoptable_lines, adoptable_records
from controller.cli.client import client
from controller.cli.desired import load, selected
from controller.cli.redacting import REDACTOR, error
from controller.cli.targeting import targeted
from controller.core.errors import FlyAPIError
from controller.execution.reconciler import list_desired
from controller.loading.loader import LoadResult
from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp
from controller.planning.adopt import match
from controller.planning.plan import AppPlan, plan
from controller.planning.render import PlanError, render, to_document

__all__ = ["cmd_plan", "plan_apps"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2  # --detailed-exitcode: changes present


async def plan_apps(
    apps: Sequence[DesiredApp],
    *,
    embedded: bool,
    prune: bool | None = None,
    lives: dict[str, tuple[LiveMachine, ...]] | None = None,
) -> tuple[list[AppPlan], list[PlanError]]:
    """Plan every app; ``lives`` (when given) receives each app's live machines."""
    plans: list[AppPlan] = []
    failures: list[PlanError] = []
    async with client(apps, embedded=embedded) as api:
        for desired in apps:
            try:
                live, missing = await list_desired(api, desired)
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


def cmd_plan(args: argparse.Namespace) -> int:
    """``plan``: the exit code (see the module docstring)."""
    loaded = load(args.dir)
    apps = targeted(selected(loaded, args.app), args)
    lives: dict[str, tuple[LiveMachine, ...]] = {}
    plans, failures = anyio.run(
        lambda: plan_apps(apps, embedded=args.embedded, prune=args.prune, lives=lives)
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
        error(f"{failure.app}: {failure.message}")
    if errors or (not loaded.ok and not args.app):
        return EXIT_ERROR
    if args.detailed_exitcode and any(p.has_changes or p.drift for p in plans):
        return EXIT_CHANGES  # detect_only drift counts: the fleet is not as declared
    return EXIT_OK
