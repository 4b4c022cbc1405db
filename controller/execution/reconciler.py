"""One level-based reconcile pass for one app: observe, plan, (re-list when suspicious), execute.

:func:`reconcile_app` lists **all** of the app's machines (a metadata filter would hide the
unmanaged ones the plan must report and never touch; :mod:`~controller.execution.listing`), maps
them to the planner's :class:`~controller.model.actual.LiveMachine`, plans, and applies the plan.
Fly has returned empty lists for apps that had machines, and tools then created duplicates
(DESIGN.md 3, FLY_API.md 1.1), so two guards stand before any create:

* with a previous pass's count (the daemon), a list that is empty or under half of it while
  creates are planned is *suspicious*: wait a moment, list again (all machines, plus a
  ``reconciler/managed=true`` metadata-filtered listing), and re-plan once without the guard;
* without memory, or when that re-list shows no managed machine either, a plan whose list
  showed no managed machine is *staged* (:mod:`~controller.execution.staging`): one create
  first, then a listing that must show it before any other create is sent.

:func:`execute_observed` applies an observed plan with that rule (``apply`` calls it after the
confirmation prompt).  A failure to observe (listing fails after the client's retries) ends the
pass with an :class:`~controller.execution.outcomes.AppResult` whose ``error_class`` says why;
nothing is executed.  :func:`observe_and_plan` is the read-only half, for ``plan`` and dry runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.core.errors import FlyAPIError
from controller.core.retry import is_fatal
from controller.execution.executor import Executor
from controller.execution.listing import list_desired, list_live
from controller.execution.outcomes import AppResult, one_line
from controller.execution.staging import execute_staged
from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp
from controller.planning.plan import AppPlan, plan
from controller.planning.staging import staged

__all__ = [
    "Observed",
    "execute_observed",
    "list_desired",
    "list_live",
    "observe_and_plan",
    "reconcile_app",
]

#: Pause before the confirming re-list of a suspicious listing (seconds, on the executor clock).
RELIST_DELAY = 2.0


@dataclass(frozen=True, slots=True)
class Observed:
    """The plan of one app and the live machines it was made from."""

    plan: AppPlan
    live: tuple[LiveMachine, ...]
    relisted: bool = False


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
    return await execute_observed(observed, desired, executor=executor)


async def execute_observed(
    observed: Observed, desired: DesiredApp, *, executor: Executor
) -> AppResult:
    """Apply an observed plan: staged (one create, then a confirming listing) when its list
    showed no managed machine, else as it is (see the module docstring)."""
    if staged(observed.plan):
        return await execute_staged(observed.plan, desired, executor, relisted=observed.relisted)
    return await executor.execute(observed.plan, desired, relisted=observed.relisted)
