"""Per-machine operations, the shared part: result records, progress, and the leased section.

:class:`MachineOps` carries what every operation of one app's execution needs (the
:class:`~controller.execution.executor.Executor`'s client, clock, leaser and waiter; the app's
desired state) and builds :class:`~controller.execution.outcomes.MachineResult` records, mapping
API errors to outcomes through :func:`controller.core.retry.classify` (DESIGN.md 6).  The
operations themselves live in :mod:`controller.execution.updating`,
:mod:`controller.execution.creating` and :mod:`controller.execution.destroying`;
:mod:`controller.execution.executor` combines them and orders the work.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass

import anyio

from controller.clock import Clock
from controller.core.errors import (
    BadRequest,
    FlyAPIError,
    LeaseHeld,
    NotFound,
    PreconditionFailed,
    RateLimited,
    RequestTimeout408,
    ServerError,
    ShuttingDown,
    TransportFailure,
    VersionConflict,
    VolumeInUse,
)
from controller.core.retry import (
    Cooldown,
    Decision,
    Drop,
    Requeue,
    RetryPolicy,
    classify,
    is_fatal,
)
from controller.execution.leasing import HeldLease, LeaseBusy, Leaser
from controller.execution.outcomes import Event, MachineResult, Outcome, Phase, Progress, one_line
from controller.execution.rollout import ExecutorSettings
from controller.execution.waiting import MachineGone, Unhealthy, Waiter
from controller.flyapi import Machine, MachinesClient
from controller.model.actual import CheckStatus, LiveMachine
from controller.model.desired import DesiredApp
from controller.planning.plan import Create, Destroy, NoOp, Restart, Start, Stop, Update

__all__ = [
    "Action",
    "ExecutionContext",
    "Gate",
    "MachineOps",
    "Skipped",
    "ambiguous",
    "new_launch_id",
    "outcome_for",
    "to_live_machine",
]

Action = Create | Update | Destroy | NoOp | Start | Stop | Restart


def new_launch_id() -> str:
    """A fresh ``reconciler/launch`` idempotency tag (uuid4)."""
    return str(uuid.uuid4())


def to_live_machine(machine: Machine) -> LiveMachine:
    """The planner's view of an API machine."""
    return LiveMachine(
        id=machine.id,
        region=machine.region,
        state=machine.state,
        version=machine.version or "",
        config=machine.config,
        name=machine.name,
        checks=tuple(CheckStatus(name=c.name, status=c.status) for c in machine.checks),
        created_at=machine.created_at or "",
        image_digest=machine.image_ref.digest if machine.image_ref is not None else None,
    )


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Everything a per-machine operation of one app's execution needs, passed explicitly.

    Built by :class:`~controller.execution.executor.Executor` for each app it executes; the
    operations never reach back into the executor (no import cycle, no shared ``self``).
    """

    client: MachinesClient
    clock: Clock
    rng: random.Random
    leaser: Leaser
    waiter: Waiter
    policy: RetryPolicy
    settings: ExecutorSettings
    launch_ids: Callable[[], str]
    emit: Callable[[Event], None]
    limiter: anyio.CapacityLimiter
    """The executor-wide in-flight cap (shared by every app it runs)."""
    desired: DesiredApp


#: Called once an operation holds its window slot: a result when the machine must not be
#: touched after all (its group halted meanwhile, a fatal error), else None.
Gate = Callable[[], MachineResult | None]


class Skipped(Exception):
    """The gate refused the operation once it had its slot; ``result`` says why."""

    def __init__(self, result: MachineResult) -> None:
        super().__init__(result.message)
        self.result = result


def ambiguous(exc: FlyAPIError) -> bool:
    """The request may have taken effect although it failed (FLY_API.md 1.3 silent success)."""
    if isinstance(exc, TransportFailure):
        return exc.request_sent
    return isinstance(exc, RequestTimeout408 | ServerError)


def outcome_for(exc: FlyAPIError, decision: Decision) -> Outcome:
    """The outcome of an action that failed with ``exc`` (classified as ``decision``)."""
    if isinstance(exc, VolumeInUse):
        return Outcome.VOLUME
    if isinstance(decision, Cooldown):
        return Outcome.QUOTA if decision.condition == "quota" else Outcome.CAPACITY
    if isinstance(exc, BadRequest):
        return Outcome.BAD_REQUEST
    if isinstance(decision, Drop):
        return Outcome.GONE
    if isinstance(decision, Requeue) or isinstance(exc, RateLimited | ShuttingDown):
        return Outcome.REQUEUE  # a 429 or a write held back by shutdown was not executed
    return Outcome.ERROR


class MachineOps:
    """Shared helpers of the per-machine operations of one app's execution."""

    def __init__(self, ctx: ExecutionContext) -> None:
        self.ctx = ctx
        self.app = ctx.desired.app
        self.desired = ctx.desired
        self.client = ctx.client
        self.clock = ctx.clock

    def result(
        self,
        action: Action,
        outcome: Outcome,
        *,
        machine_id: str | None = None,
        attempts: int = 0,
        exc: FlyAPIError | None = None,
        message: str = "",
        retry_after: float | None = None,
        version: str | None = None,
    ) -> MachineResult:
        """A :class:`MachineResult` for ``action``."""
        return MachineResult(
            app=self.app,
            machine_id=machine_id or action.machine_id,
            slot=action.slot,
            group=action.group,
            region=action.region,
            action=action.kind,  # type: ignore[arg-type]  # the four ClassVar literals
            outcome=outcome,
            attempts=attempts,
            error_class=exc.error_class if exc is not None else None,
            request_id=exc.request_id if exc is not None else None,
            message=one_line(message),
            retry_after=retry_after,
            version=version,
            fatal=exc is not None and is_fatal(exc),
        )

    def failure(
        self, action: Action, exc: FlyAPIError, attempts: int, machine_id: str | None = None
    ) -> MachineResult:
        """The result for an API error, per :func:`controller.core.retry.classify`."""
        decision = classify(
            exc, attempt=max(1, attempts), now=self.clock.now(), policy=self.ctx.policy
        )
        outcome = outcome_for(exc, decision)
        retry_after = getattr(decision, "after", None)
        if outcome is Outcome.REQUEUE and isinstance(exc, VersionConflict):
            message = f"version conflicts persisted after {attempts} attempts: {exc.message}"
        else:
            message = f"{exc.error_class}: {exc.message}" if exc.message else exc.error_class
        if isinstance(exc, VolumeInUse):
            message += (
                " (Fly volumes attach to one machine at a time: the volume is still attached "
                "to another machine, or its host has no room left for this one; the machine "
                "must run on the volume's host, so free the volume or let the reconciler "
                "make a new one by removing the old one with prune_volumes)"
            )
        return self.result(
            action,
            outcome,
            machine_id=machine_id,
            attempts=attempts,
            exc=exc,
            message=message,
            retry_after=retry_after,
        )

    def progress(
        self,
        action: Action,
        phase: Phase,
        message: str = "",
        machine_id: str | None = None,
        *,
        quiet: float = 0.0,
    ) -> None:
        """Emit a :class:`Progress` step of ``action`` (``quiet``: see :class:`Progress`)."""
        self.ctx.emit(
            Progress(
                app=self.app,
                machine_id=machine_id or action.machine_id,
                slot=action.slot,
                group=action.group,
                action=action.kind,  # type: ignore[arg-type]  # the four ClassVar literals
                phase=phase,
                message=one_line(message),
                quiet=quiet,
            )
        )

    @asynccontextmanager
    async def leased(
        self,
        action: Update | Destroy | Start | Stop | Restart,
        *,
        window: anyio.CapacityLimiter | None = None,
        gate: Gate | None = None,
    ) -> AsyncIterator[HeldLease]:
        """``async with ops.leased(action) as held:`` runs the block under the machine's lease,
        holding a slot of the group's ``window`` (its ``max_unavailable``) and of the in-flight
        cap meanwhile.

        ``gate`` is asked once both slots are held (a halt may have happened while waiting for
        them): its result is raised as :class:`Skipped`.  Someone else's lease is waited for
        (without any slot) until it expires, at most ``lease_wait`` in all; then
        :class:`LeaseBusy`.  A lease lost while the block runs cancels it and is raised.
        """

        @asynccontextmanager
        async def slots() -> AsyncIterator[None]:
            async with window if window is not None else nullcontext(), self.ctx.limiter:
                refused = gate() if gate is not None else None
                if refused is not None:
                    raise Skipped(refused)
                yield

        def waiting(busy: LeaseHeld, delay: float) -> None:
            holder = busy.holder or "someone else"
            message = f"lease held by {holder}; looking again in {delay:.1f}s"
            self.progress(action, "lease_wait", message, quiet=delay)

        lease = self.ctx.leaser.lease(self.app, action.machine_id, slots=slots, on_wait=waiting)
        async with lease as held:
            self.progress(action, "leased")
            yield held

    def lease_held(self, action: Action, busy: LeaseBusy) -> MachineResult:
        """The ``lease_held`` result: someone else kept the lease past ``lease_wait``."""
        holder = busy.last.holder or "someone else"
        return self.result(
            action,
            Outcome.LEASE_HELD,
            attempts=busy.tries,
            exc=busy.last,
            message=f"lease held by {holder} for longer than lease_wait "
            f"({self.ctx.leaser.policy.wait:g}s); left alone",
            retry_after=busy.retry_after,
        )

    async def refused_412(
        self,
        action: Update | Destroy | Start | Stop | Restart,
        exc: PreconditionFailed,
        attempts: int,
        *,
        gone: MachineResult,
    ) -> MachineResult:
        """The result of a 412 on ``action``: ``gone`` when the machine is being destroyed (a
        412 may mean that), else the failure itself."""
        if await self.is_gone(action.machine_id):
            return gone
        return self.failure(action, exc, attempts)

    async def ended(
        self, action: Update | Start | Stop | Restart, exc: Exception, attempts: int
    ) -> MachineResult:
        """The result of a write-and-settle operation on an existing machine that raised
        ``exc``: one mapping for updates and run-state transitions, so both end the same way
        (a skip, someone else's lease, not healthy, gone, a 412, any other API error).
        Anything else is a bug and is raised again."""
        if isinstance(exc, Skipped):
            return exc.result
        if isinstance(exc, LeaseBusy):
            return self.lease_held(action, exc)
        if isinstance(exc, Unhealthy):
            return self.result(action, Outcome.UNHEALTHY, attempts=attempts, message=str(exc))
        if isinstance(exc, MachineGone):
            return self.result(action, Outcome.GONE, attempts=attempts, message=str(exc))
        if isinstance(exc, PreconditionFailed):
            gone = self.result(
                action, Outcome.GONE, attempts=attempts, message="machine is being destroyed"
            )
            return await self.refused_412(action, exc, attempts, gone=gone)
        if isinstance(exc, FlyAPIError):
            return self.failure(action, exc, attempts)
        raise exc

    async def is_gone(self, machine_id: str) -> bool:
        """Whether the machine is destroyed or being destroyed (a 412 may mean that)."""
        try:
            machine = await self.client.get_machine(self.app, machine_id)
        except NotFound:
            return True
        except FlyAPIError:
            return False
        return to_live_machine(machine).gone
