"""Starting, stopping and restarting one machine (``state:``, ``restart_generation``, the
``restart`` command).

Under the machine's lease (:meth:`~controller.execution.operations.MachineOps.leased`, holding a
slot of the group's sliding window like an update): re-read the machine and go on only if it
is still the version the plan saw (else ``requeue``: the next pass plans it again); send
``/start``, ``/stop`` or ``/restart`` with the lease nonce; then wait: a start or a restart
must run healthily (the same waiter and health gate as updates, so an unhealthy machine halts
the group's rollout), a stop must reach ``stopped``.  Last, a planned restart generation is
recorded in the machine's metadata (``reconciler/restart_generation``), so the next plan is
empty.  A 429 from Fly's per-machine restart limit is waited out (its ``Retry-After``) and sent
again, a bounded number of times: it paces the rollout, it does not fail it.
"""

from __future__ import annotations

import anyio

from controller.core.errors import (
    FlyAPIError,
    NotFound,
    RateLimited,
    WaitTimeout,
)
from controller.execution.leasing import HeldLease, LeaseBusy
from controller.execution.operations import Gate, MachineOps, Skipped
from controller.execution.outcomes import MachineResult, Outcome
from controller.execution.waiting import MachineGone, Unhealthy
from controller.flyapi import Machine
from controller.model.actual import RESTART_KEY
from controller.model.desired import DEFAULT_WAIT_TIMEOUT_S, DesiredGroup
from controller.planning.plan import Restart, Start, Stop, Transition

__all__ = ["RATE_LIMITED_ATTEMPTS", "TransitionOps"]

#: Sends of one start/stop/restart refused with 429 before the action gives up (requeue).
RATE_LIMITED_ATTEMPTS = 5


class TransitionOps(MachineOps):
    """The start, stop and restart operations (see the module docstring)."""

    async def transition(
        self,
        action: Transition,
        group: DesiredGroup | None,
        *,
        window: anyio.CapacityLimiter | None = None,
        gate: Gate | None = None,
    ) -> MachineResult:
        """Apply one start, stop or restart; always returns its result (API errors included)."""
        wait_timeout = group.update.wait_timeout if group is not None else DEFAULT_WAIT_TIMEOUT_S
        smoke = group.update.smoke_period if group is not None else None
        attempts = 0  # sends tried; every result below reports it
        try:
            async with self.leased(action, window=window, gate=gate) as held:
                try:
                    machine = await self.client.get_machine(self.app, action.machine_id)
                except NotFound:
                    raise MachineGone("machine not found when re-read") from None
                if machine.version and machine.version != action.current_version:
                    return self.result(
                        action,
                        Outcome.REQUEUE,
                        attempts=attempts,
                        message=f"the machine changed since planned (version {machine.version}): "
                        "left for the next pass",
                    )
                written = self.clock.now()
                version = machine.version or ""
                sent, attempts = await self._send(action, machine, held)
                if sent is not None:
                    return sent
                done = await self._settle(action, machine, version, wait_timeout, smoke, written)
                if action.generation is not None:
                    await self.client.set_metadata(
                        self.app,
                        action.machine_id,
                        RESTART_KEY,
                        action.generation,
                        nonce=held.nonce,
                    )
                    done += f", restart_generation {action.generation} recorded"
                return self.result(
                    action, Outcome.OK, attempts=attempts, message=f"{done} (version {version})"
                )
        except (Skipped, LeaseBusy, Unhealthy, MachineGone, FlyAPIError) as exc:
            return await self.ended(action, exc, attempts)

    async def _settle(
        self,
        action: Transition,
        machine: Machine,
        version: str,
        wait_timeout: float,
        smoke: float | None,
        written: float,
    ) -> str:
        """Wait for what the action asked: stopped, or running healthily; what was done."""
        if isinstance(action, Stop):
            await self._until_stopped(action, version, wait_timeout)
            return "stopped"
        if isinstance(action, Restart) and not action.running:
            return f"{machine.state}: not restarted"
        self.progress(action, "waiting", f"waiting for version {version}")
        await self.ctx.waiter.until_healthy(
            self.app,
            action.machine_id,
            version,
            running=True,
            wait_timeout=wait_timeout,
            since=written,
            on_step=lambda phase, quiet: self.progress(action, phase, quiet=quiet),
            smoke=smoke,
            config=machine.config,
        )
        return "started" if isinstance(action, Start) else "restarted"

    async def _send(
        self, action: Transition, machine: Machine, held: HeldLease
    ) -> tuple[MachineResult | None, int]:
        """Send the start/stop/restart (nothing for a restart of a machine not running);
        429s are waited out.  A result when the action must end here (else None), and the
        number of sends made."""
        if isinstance(action, Restart) and not action.running:
            return None, 0
        if isinstance(action, Start) and machine.state not in ("stopped", "suspended", "created"):
            return None, 0  # started meanwhile (autostart, someone): the health gate still runs
        if isinstance(action, Stop) and machine.state in ("stopped", "suspended", "created"):
            return None, 0
        last: RateLimited | None = None
        for sends in range(1, RATE_LIMITED_ATTEMPTS + 1):
            self.progress(action, "writing", action.kind)
            try:
                if isinstance(action, Start):
                    await self.client.start_machine(self.app, action.machine_id, nonce=held.nonce)
                elif isinstance(action, Stop):
                    await self.client.stop_machine(self.app, action.machine_id, nonce=held.nonce)
                else:
                    await self.client.restart_machine(self.app, action.machine_id, nonce=held.nonce)
            except RateLimited as exc:  # Fly's per-machine limit: pace, do not fail
                last = exc
                policy = self.ctx.policy
                hint = exc.retry_after if exc.retry_after is not None else 1.0
                await self.clock.sleep(min(policy.max_retry_after, max(hint, 0.1)))
                continue
            return None, sends
        if last is None:  # unreachable: RATE_LIMITED_ATTEMPTS >= 1 and only 429s continue
            raise RuntimeError("transition loop ended without an attempt")
        result = self.result(
            action,
            Outcome.REQUEUE,
            attempts=RATE_LIMITED_ATTEMPTS,
            exc=last,
            message=f"rate limited {RATE_LIMITED_ATTEMPTS} times: left for the next pass",
            retry_after=last.retry_after,
        )
        return result, RATE_LIMITED_ATTEMPTS

    async def _until_stopped(self, action: Stop, version: str, wait_timeout: float) -> None:
        """Wait (long-polls, bounded by ``wait_timeout``) until the machine is ``stopped``."""
        deadline = self.clock.monotonic() + wait_timeout
        self.progress(action, "waiting", "waiting for stopped")
        while True:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                raise Unhealthy(f"machine did not stop within {wait_timeout:g}s")
            try:
                await self.client.wait_machine(
                    self.app,
                    action.machine_id,
                    state="stopped",
                    version=version or None,
                    timeout=min(self.ctx.settings.wait_chunk, remaining),
                )
            except WaitTimeout:
                continue
            except NotFound:
                raise MachineGone("machine not found while waiting for it") from None
            return
