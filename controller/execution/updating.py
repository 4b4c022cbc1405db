"""Updating one machine (DESIGN.md 5, steps 1-6).

Under the machine's lease (``async with`` :meth:`MachineOps.leased
<controller.execution.operations.MachineOps.leased>`): if the lease shows another version
than the plan was made from, re-read and re-plan that machine; ``POST`` the full desired
config with ``current_version`` and the lease nonce (``skip_launch`` for stopped, suspended
and created machines); on a 409 version conflict re-read, re-plan (it may now be a no-op) and
retry with jittered backoff from 100 ms, at most ``conflict_retries`` times, then requeue;
finally wait until the machine runs the new version healthily.  A
re-plan that finds the machine in sync still verifies its health before reporting ``noop``.
"""

from __future__ import annotations

import anyio

from controller.core.errors import FlyAPIError, NotFound, VersionConflict
from controller.core.retry import Replan, classify
from controller.execution.leasing import LeaseBusy
from controller.execution.operations import Gate, MachineOps, Skipped, to_live_machine
from controller.execution.outcomes import MachineResult, Outcome
from controller.execution.waiting import MachineGone, Unhealthy
from controller.model.desired import DEFAULT_WAIT_TIMEOUT_S, DesiredGroup
from controller.planning.plan import SKIP_LAUNCH_STATES, NoOp, Update, plan

__all__ = ["UpdateOps"]


class UpdateOps(MachineOps):
    """The update operation (see the module docstring)."""

    async def update(
        self,
        action: Update,
        group: DesiredGroup | None,
        *,
        window: anyio.CapacityLimiter | None = None,
        gate: Gate | None = None,
    ) -> MachineResult:
        """Apply one planned update; always returns its result (API errors included).

        ``window`` is the group's sliding ``max_unavailable`` window, ``gate`` the halt check
        made once a slot of it is held (see :meth:`MachineOps.leased`).
        """
        wait_timeout = group.update.wait_timeout if group is not None else DEFAULT_WAIT_TIMEOUT_S
        smoke = group.update.smoke_period if group is not None else None
        attempts = 0  # writes tried; every result below reports it
        try:
            async with self.leased(action, window=window, gate=gate) as held:
                current = action
                if held.version and held.version != action.current_version:
                    replanned = await self.replan(
                        current, "the lease shows a newer version", attempts, wait_timeout, smoke
                    )
                    if isinstance(replanned, MachineResult):
                        return replanned
                    current = replanned
                conflicts = 0
                while True:  # bounded: classify stops replanning after conflict_retries
                    attempts += 1
                    written = self.clock.now()
                    self.progress(
                        current, "writing", f"update from version {current.current_version}"
                    )
                    try:
                        updated = await self.client.update_machine(
                            self.app,
                            current.machine_id,
                            config=current.config,
                            current_version=current.current_version,
                            nonce=held.nonce,
                            skip_launch=current.skip_launch,
                        )
                    except VersionConflict as exc:
                        conflicts += 1
                        decision = classify(
                            exc, attempt=conflicts, rng=self.ctx.rng, policy=self.ctx.policy
                        )
                        if not isinstance(decision, Replan):
                            raise
                        await self.clock.sleep(decision.after)
                        replanned = await self.replan(
                            current, "409 version conflict", attempts, wait_timeout, smoke
                        )
                        if isinstance(replanned, MachineResult):
                            return replanned
                        current = replanned
                        continue
                    break
                return await self.await_updated(
                    current,
                    updated.version or "",
                    attempts,
                    written,
                    wait_timeout,
                    smoke,
                    replanned=current is not action,
                )
        except (Skipped, LeaseBusy, Unhealthy, MachineGone, FlyAPIError) as exc:
            return await self.ended(action, exc, attempts)

    async def await_updated(
        self,
        action: Update,
        version: str,
        attempts: int,
        written: float,
        wait_timeout: float,
        smoke: float | None,
        *,
        replanned: bool,
    ) -> MachineResult:
        """Wait until the machine runs the ``version`` just written, healthily; its result."""
        self.progress(action, "waiting", f"waiting for version {version}")
        await self.ctx.waiter.until_healthy(
            self.app,
            action.machine_id,
            version,
            running=not action.skip_launch,
            wait_timeout=wait_timeout,
            since=written,
            on_step=lambda phase, quiet: self.progress(action, phase, quiet=quiet),
            smoke=smoke,
            config=action.config,
        )
        note = " (re-planned after a concurrent change)" if replanned else ""
        return self.result(
            action,
            Outcome.OK,
            attempts=attempts,
            message=f"now running version {version}{note}",
            version=version,
        )

    async def replan(
        self,
        action: Update,
        why: str,
        attempts: int,
        wait_timeout: float,
        smoke: float | None = None,
    ) -> Update | MachineResult:
        """Re-read the machine and plan it again: the new :class:`Update`, or a final result.

        A machine found in sync is still verified before ``noop`` is returned: the change may
        be our own (an update that committed although its response was lost) or someone
        else's, and either way the rollout must not go on past an unhealthy machine.
        """
        try:
            machine = await self.client.get_machine(self.app, action.machine_id)
        except NotFound:
            raise MachineGone("machine not found when re-read") from None
        again = plan(self.desired, [to_live_machine(machine)])
        found = next((a for a in again.actions if a.machine_id == action.machine_id), None)
        self.progress(action, "replanned", why)
        if isinstance(found, Update):
            return found
        if not isinstance(found, NoOp):
            return self.result(
                action,
                Outcome.GONE,
                attempts=attempts,
                message=f"no longer planned after re-reading ({why}): left alone",
            )
        version = machine.version or ""
        self.progress(action, "waiting", f"verifying version {version}")
        await self.ctx.waiter.until_healthy(
            self.app,
            action.machine_id,
            version,
            running=machine.state not in SKIP_LAUNCH_STATES,
            wait_timeout=wait_timeout,
            on_step=lambda phase, quiet: self.progress(action, phase, quiet=quiet),
            smoke=smoke,
        )
        return self.result(
            action,
            Outcome.NOOP,
            attempts=attempts,
            message=f"in sync after re-reading ({why}): {found.reason}",
            version=version,
        )
