"""``plan --out FILE`` and ``apply --plan FILE``: write a reviewed plan, apply exactly it.

The document and its checks are :mod:`controller.planning.planfile` (pure).  ``apply --plan``
lists and plans every app of the file again from the desired-state directory (with the file's
apps, groups and ``--prune``), and refuses the **whole** change (exit 4, nothing written) when
anything moved since the plan: a machine's version (named), the desired state or one of its
resolved secrets (the app named), or the actions themselves.  Otherwise it executes the plans
it just made, which are the saved ones.  No confirmation is asked: the plan was reviewed when
it was saved.

Between that check and each machine's write, the executor's own guards hold (a lease, then
``current_version`` on every update): a change in that window is re-read and re-planned per
machine, as in any ``apply``.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from controller.cli.apply import EXIT_ERROR, EXIT_REFUSED, Reporter, exit_code
from controller.cli.oneapp import ClientFactory
from controller.clock import SystemClock
from controller.core.errors import ConfigError, FlyAPIError
from controller.execution.executor import Executor
from controller.execution.outcomes import AppResult, one_line
from controller.execution.reconciler import Observed, execute_observed, observe_and_plan
from controller.execution.rollout import ExecutorSettings
from controller.loading.loader import LoadResult
from controller.loading.pausing import marker_reason
from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp
from controller.planning.plan import AppPlan
from controller.planning.planfile import PlanFileInvalid, SavedPlan, build, check, parse
from controller.planning.targeting import narrow_groups, pause

__all__ = ["apply_saved", "read_plan", "write_plan"]


def write_plan(
    path: Path,
    observed: Sequence[tuple[DesiredApp, AppPlan, Sequence[LiveMachine]]],
    *,
    prune: bool | None,
) -> None:
    """Write the saved plan to ``path`` atomically (a temporary file, then a rename)."""
    document = build(observed, salt=secrets.token_hex(16), prune=prune)
    text = json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the plan to {path}: {exc.strerror or exc}") from None


def read_plan(path: Path) -> SavedPlan:
    """Read and validate a saved plan; a bad file is a :class:`ConfigError`."""
    try:
        return parse(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"cannot read the plan {path}: {exc.strerror or exc}") from None
    except (ValueError, PlanFileInvalid) as exc:
        raise ConfigError(f"{path} is not a valid saved plan: {exc}") from None


def _desired(saved: SavedPlan, loaded: LoadResult, directory: Path) -> list[DesiredApp] | str:
    """The apps of the plan as the files declare them now, or why the plan no longer fits."""
    apps: list[DesiredApp] = []
    for entry in saved.apps:
        if entry.app in loaded.blocked:
            return f"the desired-state file of app {entry.app} is invalid now"
        found = loaded.apps.get(entry.app)
        if found is None:
            return f"app {entry.app} is no longer declared in {directory}"
        narrowed = narrow_groups(found, entry.only_groups)
        apps.append(pause(narrowed, marker_reason(directory, entry.app)))
    return apps


def apply_saved(
    path: Path,
    *,
    loaded: LoadResult,
    directory: Path,
    client: ClientFactory,
    lease_wait: float,
    redact: Callable[[str], str],
) -> int:
    """``apply --plan``: the exit code (0, 1, 3 as ``apply``; 4 when the plan is stale)."""
    saved = read_plan(path)
    apps = _desired(saved, loaded, directory)
    if isinstance(apps, str):
        _refuse([apps], redact)
        return EXIT_REFUSED
    reporter = Reporter(redact=redact)

    async def run() -> int:
        async with client(apps) as api:
            executor = Executor(
                api,
                clock=SystemClock(),
                rng=random.Random(),
                settings=ExecutorSettings(lease_wait=lease_wait),
                on_event=reporter.event,
            )
            observed: list[Observed] = []
            failed: list[AppResult] = []
            for desired in apps:
                try:
                    observed.append(
                        await observe_and_plan(
                            desired,
                            executor=executor,
                            prune=saved.prune,
                            allow_empty=saved.allow_empty,
                        )
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
            if failed:
                reporter.summary(failed, [])
                return EXIT_ERROR
            problems = [
                problem
                for entry, desired, one in zip(saved.apps, apps, observed, strict=True)
                for problem in check(entry, saved.salt, desired, one.plan, one.live)
            ]
            if problems:
                _refuse(problems, redact)
                return EXIT_REFUSED
            reporter.plan([o.plan for o in observed])
            results: dict[str, AppResult] = {}

            async def execute(one: Observed, desired: DesiredApp) -> None:
                results[desired.app] = await execute_observed(one, desired, executor=executor)

            changing = [(o, d) for o, d in zip(observed, apps, strict=True) if o.plan.has_changes]
            reporter.start({o.plan.app: len(o.plan.changes) for o, _ in changing})
            try:
                async with anyio.create_task_group() as tg:
                    for one, desired in changing:
                        tg.start_soon(execute, one, desired)
            finally:
                reporter.stop()
        ordered = tuple(
            results.get(o.plan.app) or AppResult(app=o.plan.app, plan=o.plan) for o in observed
        )
        if changing:
            reporter.summary(ordered, [])
        return exit_code(ordered)

    return anyio.run(run)


def _refuse(problems: Sequence[str], redact: Callable[[str], str]) -> None:
    for problem in problems:
        print(f"machine-reconciler: refused: {redact(problem)}", file=sys.stderr)
    print(
        "machine-reconciler: refused: nothing was changed; run plan --out again and review it",
        file=sys.stderr,
    )
