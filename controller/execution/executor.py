"""The executor: applies one app's plan to Fly Machines, safely (DESIGN.md 5 and 6).

It never decides *what* to do (that is :func:`controller.planning.plan.plan`); it decides *how*:

* **Order** (:mod:`controller.execution.rollout`): groups in file order; in a group, creates
  (paced by the client at Fly's create limit) and then updates in a *sliding window* of
  ``max_unavailable`` (a new machine starts as soon as one finishes); destroys last.  The window
  is what bounds concurrency; ``max_in_flight`` (default 64) is only a global safety cap across
  every app sharing the executor (one ``anyio.CapacityLimiter``; a machine waiting for someone
  else's lease holds neither a window slot nor an in-flight slot).
* **Update** of one machine: lease (short TTL, refreshed in the background,
  :mod:`controller.execution.leasing`; someone else's lease is waited for up to ``lease_wait``,
  never cleared); if the lease shows another version than planned, re-read and re-plan that machine;
  ``POST`` the full desired config with ``current_version`` and the lease nonce; on a 409
  version conflict re-read, re-plan and retry with jittered backoff (bounded, then requeue);
  then wait, verify and require health (:mod:`controller.execution.waiting`); release the lease.
* **Create**: ``POST`` with ``lease_ttl`` and a fresh ``reconciler/launch`` tag.  After an
  ambiguous failure (timeout, dropped connection, 408, 5xx) it re-lists by that tag before
  trying again, and adopts the machine if it exists: a create never makes a duplicate.
* **Destroy**: lease, re-read (only managed machines of the planned slot are destroyed), then
  ``DELETE ?force=true``; 404 means already gone.
* **Halting**: a machine that does not become healthy halts its group's rollout: nothing more
  of that group is attempted (``rollout_halted``), other groups and apps carry on.
* **Errors** follow DESIGN.md 6 through :func:`controller.core.retry.classify`; every action ends
  in exactly one :class:`~controller.execution.outcomes.MachineResult`.

Clock, sleeping, jitter (``rng``) and launch ids are injected.  ``on_event`` receives every
:class:`~controller.execution.outcomes.Progress` step and final result (exceptions in it are logged
and ignored).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence

import anyio

from controller.clock import Clock
from controller.core.errors import FlyAPIError
from controller.core.retry import is_fatal
from controller.execution.creating import CreateOps, Shared
from controller.execution.destroying import DestroyOps
from controller.execution.leasing import Leaser
from controller.execution.operations import (
    Action,
    ExecutionContext,
    MachineOps,
    new_launch_id,
    to_live_machine,
)
from controller.execution.outcomes import (
    AppResult,
    Event,
    MachineResult,
    Outcome,
    one_line,
)
from controller.execution.rollout import (
    ExecutorSettings,
    GroupWork,
    batch_size,
    group_work,
)
from controller.execution.transitions import TransitionOps
from controller.execution.updating import UpdateOps
from controller.execution.waiting import Waiter
from controller.flyapi import MachinesClient
from controller.model.desired import DesiredApp, DesiredGroup
from controller.planning.plan import AppPlan, Create, Destroy, NoOp, Restart, Start, Stop, Update

__all__ = [
    "Executor",
    "ExecutorSettings",
    "execute",
    "new_launch_id",
    "to_live_machine",
]

logger = logging.getLogger(__name__)

OnEvent = Callable[[Event], None]


class Executor:
    """Applies plans through one :class:`~controller.flyapi.MachinesClient`.

    One executor may run several apps concurrently (``execute`` from several tasks): they
    share the ``max_in_flight`` limiter.  Pass ``limiter`` to share it wider still.
    """

    def __init__(
        self,
        client: MachinesClient,
        *,
        clock: Clock,
        rng: random.Random,
        settings: ExecutorSettings | None = None,
        launch_ids: Callable[[], str] = new_launch_id,
        on_event: OnEvent | None = None,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.rng = rng
        self.settings = settings or ExecutorSettings()
        self.launch_ids = launch_ids
        self.on_event = on_event
        self.limiter = limiter or anyio.CapacityLimiter(self.settings.max_in_flight)
        self.leaser = Leaser(client, clock=clock, rng=rng, policy=self.settings.lease_policy())
        self.waiter = Waiter(client, clock=clock, rng=rng, policy=self.settings.wait_policy())
        self.policy = self.settings.retry_policy()

    async def execute(
        self,
        app_plan: AppPlan,
        desired: DesiredApp,
        *,
        relisted: bool = False,
        prior: Sequence[MachineResult] = (),
        watch: OnEvent | None = None,
        shared: Shared | None = None,
    ) -> AppResult:
        """Apply ``app_plan`` (made from ``desired``): one result per action, in plan order.

        A refused plan is not run: its changes come back ``refused``.  A plan that still
        ``needs_relist`` is a caller error (re-list and re-plan first, see the reconciler).
        ``relisted`` is only recorded in the result.

        A plan applied in parts (a staged create, :mod:`controller.execution.staging`) passes
        what the earlier parts ended with as ``prior`` (a fatal error, a halted group, an org
        quota or a region without capacity keeps holding back this part, as within one run)
        and one :class:`~controller.execution.creating.Shared` for every part (no two creates
        pick the same volume; the machines known to exist).
        ``watch`` sees every event of this call before ``on_event`` does.
        """
        if app_plan.app != desired.app:
            raise ValueError(f"plan for {app_plan.app!r} but desired state for {desired.app!r}")
        if app_plan.needs_relist:
            raise ValueError("this plan needs a re-list before it may create machines")
        if app_plan.create_app is not None and app_plan.refused is None:
            failed = await self._create_app(app_plan.app, app_plan.create_app)
            if failed is not None:
                return AppResult(
                    app=app_plan.app,
                    plan=app_plan,
                    error_class=failed.error_class,
                    message=one_line(f"creating app failed: {failed.message or failed}"),
                    request_id=failed.request_id,
                    relisted=relisted,
                    error_fatal=is_fatal(failed),
                )
        ctx = ExecutionContext(
            client=self.client,
            clock=self.clock,
            rng=self.rng,
            leaser=self.leaser,
            waiter=self.waiter,
            policy=self.policy,
            settings=self.settings,
            launch_ids=self.launch_ids,
            emit=self.emit if watch is None else _watched(watch, self.emit),
            limiter=self.limiter,
            desired=desired,
        )
        results = await _AppRun(ctx, app_plan, prior=prior, shared=shared).run()
        return AppResult(app=app_plan.app, results=results, plan=app_plan, relisted=relisted)

    async def _create_app(self, app: str, org: str) -> FlyAPIError | None:
        """``POST /v1/apps`` (the plan's ``+ create app``); None once the app exists.

        Creating is not retried by the client (not idempotent): when it fails, the app may
        still exist (someone else made it, or an answer was lost), so one read decides.
        """
        try:
            await self.client.create_app(app, org)
        except FlyAPIError as exc:
            try:
                await self.client.get_app(app)
            except FlyAPIError:
                return exc
        return None

    def emit(self, event: Event) -> None:
        """Send ``event`` to ``on_event``.

        Results are not logged here: whoever consumes them logs each one once (the daemon's
        telemetry as a ``controller.actions`` event with every field, ``error_class``
        included; ``apply`` prints one line per result), and every result is returned.
        """
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a broken progress display must not break a rollout
            logger.exception("on_event callback failed")


def _watched(watch: OnEvent, emit: OnEvent) -> OnEvent:
    """``emit`` preceded by ``watch`` (whose exceptions are logged and ignored, like
    ``on_event``'s)."""

    def both(event: Event) -> None:
        try:
            watch(event)
        except Exception:
            logger.exception("watch callback failed")
        emit(event)

    return both


async def execute(
    app_plan: AppPlan,
    desired: DesiredApp,
    *,
    client: MachinesClient,
    clock: Clock,
    rng: random.Random,
    settings: ExecutorSettings | None = None,
    launch_ids: Callable[[], str] = new_launch_id,
    on_event: OnEvent | None = None,
) -> AppResult:
    """Apply one plan with a one-off :class:`Executor` (see :meth:`Executor.execute`)."""
    executor = Executor(
        client, clock=clock, rng=rng, settings=settings, launch_ids=launch_ids, on_event=on_event
    )
    return await executor.execute(app_plan, desired)


# ------------------------------------------------------------------------------ one app


class _AppRun:
    """The state of one app's execution: results, halted groups, cooldowns, fatal errors.

    The per-machine operations are separate objects sharing only the frozen context.
    """

    def __init__(
        self,
        ctx: ExecutionContext,
        app_plan: AppPlan,
        *,
        prior: Sequence[MachineResult] = (),
        shared: Shared | None = None,
    ) -> None:
        self.ctx = ctx
        self.plan = app_plan
        self.desired = ctx.desired
        self.ops = MachineOps(ctx)
        self.updates = UpdateOps(ctx)
        self.creates = CreateOps(ctx, shared=shared)
        self.creates.shared.known.update(
            a.machine_id for a in app_plan.actions if a.machine_id is not None
        )
        self.destroys = DestroyOps(ctx)
        self.transitions = TransitionOps(ctx)
        self.result = self.ops.result
        self._index = {id(a): i for i, a in enumerate(app_plan.actions)}
        self._results: list[MachineResult | None] = [None] * len(app_plan.actions)
        self.halted: dict[str | None, MachineResult] = {}
        self.quota_block: MachineResult | None = None
        self.capacity_block: dict[str, MachineResult] = {}
        self.fatal: MachineResult | None = None
        for earlier in prior:
            self.note(earlier)

    # ------------------------------------------------------------------ orchestration

    async def run(self) -> tuple[MachineResult, ...]:
        refused = self.plan.refused
        for action in self.plan.actions:
            if isinstance(action, NoOp):
                self.record(action, self.result(action, Outcome.NOOP, message=action.reason))
            elif refused is not None:
                self.record(action, self.result(action, Outcome.REFUSED, message=refused.reason))
        if refused is None:
            works = group_work(self.plan, self.desired)
            for work in works:
                await self._group(work)
            limiter = anyio.CapacityLimiter(self.ctx.settings.destroy_concurrency)
            async with anyio.create_task_group() as tg:
                for work in works:
                    for destroy in work.destroys:
                        tg.start_soon(self._task, destroy, work, limiter)
        return tuple(r for r in self._results if r is not None)

    async def _group(self, work: GroupWork) -> None:
        if work.creates:
            # Every create of the group is started at once: the client paces the POSTs at
            # Fly's per-app create limit (1/s, burst 3), the in-flight cap bounds the rest.
            limiter = anyio.CapacityLimiter(self.ctx.settings.create_concurrency)
            async with anyio.create_task_group() as tg:
                for create in work.creates:
                    tg.start_soon(self._task, create, work, limiter)
        if not work.updates and not work.transitions:
            return
        # A sliding window: at most max_unavailable machines of the group are being updated;
        # the next starts as soon as one finishes (not in fixed batches).  A machine that
        # fails its health gate halts the group: queued ones are refused by the gate once
        # they get a slot, in-flight ones finish.  Starts, stops and restarts share the window.
        machines = len(work.creates) + len(work.updates) + len(work.noops) + len(work.transitions)
        window = anyio.CapacityLimiter(batch_size(work.group, machines))
        async with anyio.create_task_group() as tg:
            for update in work.updates:
                tg.start_soon(self._update, update, work, window)
            for transition in work.transitions:
                tg.start_soon(self._transition, transition, work, window)

    async def _transition(
        self, action: Start | Stop | Restart, work: GroupWork, window: anyio.CapacityLimiter
    ) -> None:
        result = self._skipped(action, work) or await self.transitions.transition(
            action, work.group, window=window, gate=lambda: self._skipped(action, work)
        )
        self.record(action, result)

    async def _update(self, action: Update, work: GroupWork, window: anyio.CapacityLimiter) -> None:
        result = self._skipped(action, work) or await self.updates.update(
            action,
            work.group,
            window=window,
            gate=lambda: self._skipped(action, work),
        )
        self.record(action, result)

    async def _task(
        self, action: Action, work: GroupWork, limiter: anyio.CapacityLimiter | None
    ) -> None:
        if limiter is not None:
            async with limiter:
                result = self._skipped(action, work) or await self._apply(action, work.group)
        else:
            result = self._skipped(action, work) or await self._apply(action, work.group)
        self.record(action, result)

    async def _apply(self, action: Action, group: DesiredGroup | None) -> MachineResult:
        if isinstance(action, Create):
            return await self.creates.create(action, group)
        if isinstance(action, Update):
            return await self.updates.update(action, group)
        if isinstance(action, Destroy):
            return await self.destroys.destroy(action)
        if isinstance(action, Start | Stop | Restart):
            return await self.transitions.transition(action, group)
        return self.result(action, Outcome.NOOP, message=action.reason)

    def _skipped(self, action: Action, work: GroupWork) -> MachineResult | None:
        """A result for an action that must not be attempted now, else None."""
        if self.fatal is not None:
            return self.result(
                action,
                Outcome.ERROR,
                message=f"not attempted: {self.fatal.error_class} earlier in this run",
            )
        halted = self.halted.get(work.name)
        if halted is not None:
            return self.result(
                action,
                Outcome.ROLLOUT_HALTED,
                message=f"not attempted: the rollout of group {work.name} halted "
                f"({halted.slot or halted.machine_id} did not become healthy)",
            )
        if isinstance(action, Create):
            if self.quota_block is not None:
                return self.result(
                    action,
                    Outcome.QUOTA,
                    message="not attempted: the org quota was reached earlier in this run",
                    retry_after=self.quota_block.retry_after,
                )
            capacity = self.capacity_block.get(action.region)
            if capacity is not None:
                return self.result(
                    action,
                    Outcome.CAPACITY,
                    message=f"not attempted: no capacity in {action.region} earlier in this run",
                    retry_after=capacity.retry_after,
                )
        return None

    def record(self, action: Action, result: MachineResult) -> None:
        """Keep ``result`` (in plan order), update the run's conditions, emit it."""
        self._results[self._index[id(action)]] = result
        self.note(result)
        self.ctx.emit(result)

    def note(self, result: MachineResult) -> None:
        """Update the run's conditions (halted groups, quota, capacity, fatal) from ``result``."""
        if result.outcome is Outcome.UNHEALTHY:
            self.halted.setdefault(result.group, result)
        elif result.outcome is Outcome.QUOTA and self.quota_block is None and result.attempts:
            self.quota_block = result
        elif result.outcome is Outcome.CAPACITY and result.action == "create" and result.attempts:
            self.capacity_block.setdefault(result.region, result)
        if result.fatal and self.fatal is None:
            self.fatal = result
