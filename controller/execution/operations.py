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

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.core.errors import (
    BadRequest,
    FlyAPIError,
    LeaseHeld,
    NotFound,
    RateLimited,
    RequestTimeout408,
    ServerError,
    ShuttingDown,
    TransportFailure,
    VersionConflict,
    VolumeInUse,
)
from controller.core.retry import Cooldown, Decision, Drop, Requeue, classify
from controller.execution.leasing import HeldLease, LeaseBusy
from controller.execution.outcomes import MachineResult, Outcome, Phase, Progress, one_line
from controller.flyapi import Machine
from controller.model.actual import CheckStatus, LiveMachine
from controller.model.desired import DesiredApp
from controller.planning.plan import AppPlan, Create, Destroy, NoOp, Update

if TYPE_CHECKING:
    from controller.execution.executor import Executor

__all__ = [
    "Action",
    "Attempts",
    "MachineOps",
    "ambiguous",
    "new_launch_id",
    "outcome_for",
    "to_live_machine",
]

Action = Create | Update | Destroy | NoOp


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
    )


@dataclass(slots=True)
class Attempts:
    """A counter of the writes an operation tried (shared with its leased section)."""

    n: int = 0


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

    def __init__(self, ex: Executor, app_plan: AppPlan, desired: DesiredApp) -> None:
        self.ex = ex
        self.app = app_plan.app
        self.plan = app_plan
        self.desired = desired
        self.client = ex.client
        self.clock = ex.clock

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
        )

    def failure(
        self, action: Action, exc: FlyAPIError, attempts: int, machine_id: str | None = None
    ) -> MachineResult:
        """The result for an API error, per :func:`controller.core.retry.classify`."""
        decision = classify(
            exc, attempt=max(1, attempts), now=self.clock.now(), policy=self.ex.policy
        )
        outcome = outcome_for(exc, decision)
        retry_after = getattr(decision, "after", None)
        if outcome is Outcome.REQUEUE and isinstance(exc, VersionConflict):
            message = f"version conflicts persisted after {attempts} attempts: {exc.message}"
        else:
            message = f"{exc.error_class}: {exc.message}" if exc.message else exc.error_class
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
        self, action: Action, phase: Phase, message: str = "", machine_id: str | None = None
    ) -> None:
        """Emit a :class:`Progress` step of ``action``."""
        self.ex.emit(
            Progress(
                app=self.app,
                machine_id=machine_id or action.machine_id,
                slot=action.slot,
                group=action.group,
                action=action.kind,  # type: ignore[arg-type]  # the four ClassVar literals
                phase=phase,
                message=one_line(message),
            )
        )

    async def leased(
        self,
        action: Update | Destroy,
        body: Callable[[HeldLease], Awaitable[MachineResult]],
    ) -> MachineResult:
        """Run ``body`` under the machine's lease, holding an in-flight slot meanwhile.

        Someone else's lease is waited for (without a slot) until it expires, at most
        ``lease_wait`` in all; then :class:`LeaseBusy`.
        """
        leaser = self.ex.leaser
        deadline: float | None = None  # lease_wait counts from the first "held by"
        tries = 0
        while True:
            tries += 1
            async with self.ex.limiter:
                try:
                    held = await leaser.try_acquire(self.app, action.machine_id)
                except LeaseHeld as exc:
                    busy = exc
                else:
                    self.progress(action, "leased")
                    return await leaser.run(held, body)
            now = self.clock.monotonic()
            if deadline is None:
                deadline = now + leaser.policy.wait
            if now >= deadline:
                raise LeaseBusy(busy, tries=tries, retry_after=leaser.expiry_hint(busy))
            delay = min(leaser.wait_delay(busy), deadline - now)
            self.progress(
                action,
                "lease_wait",
                f"lease held by {busy.holder or 'someone else'}; looking again in {delay:.1f}s",
            )
            await self.clock.sleep(delay)

    def lease_held(self, action: Action, busy: LeaseBusy) -> MachineResult:
        """The ``lease_held`` result: someone else kept the lease past ``lease_wait``."""
        holder = busy.last.holder or "someone else"
        return self.result(
            action,
            Outcome.LEASE_HELD,
            attempts=busy.tries,
            exc=busy.last,
            message=f"lease held by {holder} for longer than lease_wait "
            f"({self.ex.leaser.policy.wait:g}s); left alone",
            retry_after=busy.retry_after,
        )

    async def is_gone(self, machine_id: str) -> bool:
        """Whether the machine is destroyed or being destroyed (a 412 may mean that)."""
        try:
            machine = await self.client.get_machine(self.app, machine_id)
        except NotFound:
            return True
        except FlyAPIError:
            return False
        return to_live_machine(machine).gone
