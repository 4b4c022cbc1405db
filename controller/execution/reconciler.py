"""One level-based reconcile pass for one app: observe, plan, (re-list when suspicious), execute.

:func:`reconcile_app` lists **all** of the app's machines (a metadata filter would hide the
unmanaged ones the plan must report and never touch), maps them to the planner's
:class:`~controller.model.actual.LiveMachine`, plans, and hands the plan to the
:class:`~controller.execution.executor.Executor`.  When the plan says the list looks suspicious (an
empty or sharply shrunken list while creates are planned, DESIGN.md 3; Fly once returned empty lists
and tools created duplicates), it waits a moment, lists again (all machines, plus a
``reconciler/managed=true`` metadata-filtered listing to confirm), and re-plans once without the
guard before anything is created.

A failure to observe (listing fails after the client's retries) ends the pass with an
:class:`~controller.execution.outcomes.AppResult` whose ``error_class`` says why; nothing is
executed.
:func:`observe_and_plan` is the read-only half, for ``plan`` and dry runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.errors import FlyAPIError, NotFound
from controller.core.retry import is_fatal
from controller.execution.executor import Executor, to_live_machine
from controller.execution.outcomes import AppResult, one_line
from controller.flyapi import MachinesClient
from controller.model.actual import MANAGED_KEY, MANAGED_VALUE, LiveMachine
from controller.model.desired import DesiredApp
from controller.planning.plan import AppPlan, plan

__all__ = ["Observed", "list_desired", "list_live", "observe_and_plan", "reconcile_app"]

#: Pause before the confirming re-list of a suspicious listing (seconds, on the executor clock).
RELIST_DELAY = 2.0


@dataclass(frozen=True, slots=True)
class Observed:
    """The plan of one app and the live machines it was made from."""

    plan: AppPlan
    live: tuple[LiveMachine, ...]
    relisted: bool = False


async def list_live(
    client: MachinesClient, app: str, *, confirm_managed: bool = False
) -> tuple[LiveMachine, ...]:
    """Every machine of ``app`` as :class:`LiveMachine` values, sorted by id.

    ``confirm_managed`` adds a second listing filtered on ``reconciler/managed=true`` and keeps
    the union, so a managed machine missing from one (eventually consistent) answer is seen.
    """
    found = {m.id: m for m in await client.list_machines(app)}
    if confirm_managed:
        for machine in await client.list_machines(app, metadata={MANAGED_KEY: MANAGED_VALUE}):
            found.setdefault(machine.id, machine)
    return tuple(to_live_machine(found[k]) for k in sorted(found))


async def list_desired(
    client: MachinesClient, desired: DesiredApp, *, confirm_managed: bool = False
) -> tuple[tuple[LiveMachine, ...], bool]:
    """:func:`list_live` for ``desired.app`` and whether the app is missing.

    Listing an app Fly does not know answers 404.  With ``org:`` in the file that is a plan
    to create the app (``(), True``); without it, the :class:`NotFound` is raised again with a
    message saying how to fix it.
    """
    try:
        return await list_live(client, desired.app, confirm_managed=confirm_managed), False
    except NotFound as exc:
        if desired.org is not None:
            return (), True
        raise NotFound(
            method=exc.method,
            path=exc.path,
            status=exc.status,
            request_id=exc.request_id,
            detail=f"app {desired.app} not found; create it with `fly apps create` "
            "or set org: in the file",
        ) from exc


async def observe_and_plan(
    desired: DesiredApp,
    *,
    executor: Executor,
    allow_empty: bool = False,
    prune: bool | None = None,
    previous_managed_count: int | None = None,
    relist_delay: float = RELIST_DELAY,
) -> Observed:
    """List, plan, and re-list once (then re-plan) when the plan asks for it.  Raises
    :class:`~controller.core.errors.FlyAPIError` when listing fails."""
    client = executor.client
    live, missing = await list_desired(client, desired)
    app_plan = plan(
        desired,
        live,
        allow_empty=allow_empty,
        prune=prune,
        previous_managed_count=previous_managed_count,
        app_missing=missing,
    )
    if not app_plan.needs_relist:
        return Observed(app_plan, live)
    await executor.clock.sleep(relist_delay)
    live, missing = await list_desired(client, desired, confirm_managed=True)
    app_plan = plan(desired, live, allow_empty=allow_empty, prune=prune, app_missing=missing)
    return Observed(app_plan, live, relisted=True)


async def reconcile_app(
    desired: DesiredApp,
    *,
    executor: Executor,
    allow_empty: bool = False,
    prune: bool | None = None,
    previous_managed_count: int | None = None,
    relist_delay: float = RELIST_DELAY,
) -> AppResult:
    """One pass for one app: observe, plan, execute.  Never raises for API failures.

    ``previous_managed_count`` is ``AppResult.plan.managed_count`` of the previous pass (the
    daemon keeps it), which arms the suspicious-list guard.  ``prune`` overrides the file's.
    """
    try:
        observed = await observe_and_plan(
            desired,
            executor=executor,
            allow_empty=allow_empty,
            prune=prune,
            previous_managed_count=previous_managed_count,
            relist_delay=relist_delay,
        )
    except FlyAPIError as exc:
        return AppResult(
            app=desired.app,
            error_class=exc.error_class,
            message=one_line(f"listing machines failed: {exc.message or exc.error_class}"),
            request_id=exc.request_id,
            error_fatal=is_fatal(exc),
            error_retryable=exc.retryable,
        )
    return await executor.execute(observed.plan, desired, relisted=observed.relisted)
