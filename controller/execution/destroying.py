"""Destroying one managed machine (DESIGN.md 5): lease, re-read, ``DELETE ?force=true``.

The planner only plans destroys of managed machines; the re-read under the lease makes sure
that is still true (and that the machine still holds the planned slot) before anything is
destroyed, otherwise the action is ``refused``.  A 404 anywhere means already gone: success.
After the delete, the executor waits (bounded by ``destroy_wait``) for ``destroyed``.
"""

from __future__ import annotations

import logging

from controller.core.errors import FlyAPIError, NotFound, PreconditionFailed, WaitTimeout
from controller.execution.leasing import LeaseBusy
from controller.execution.operations import MachineOps, to_live_machine
from controller.execution.outcomes import MachineResult, Outcome
from controller.execution.waiting import MachineGone
from controller.planning.plan import Destroy

logger = logging.getLogger(__name__)

__all__ = ["DestroyOps"]


class DestroyOps(MachineOps):
    """The destroy operation (see the module docstring)."""

    async def destroy(self, action: Destroy) -> MachineResult:
        """Apply one planned destroy; always returns its result (API errors included)."""
        attempts = 0  # the delete sent or not; every result below reports it
        try:
            async with self.leased(action) as held:
                try:
                    machine = await self.client.get_machine(self.app, action.machine_id)
                except NotFound:
                    raise MachineGone("machine not found") from None
                live = to_live_machine(machine)
                if not live.managed or (action.slot is not None and live.slot != action.slot):
                    return self.result(
                        action,
                        Outcome.REFUSED,
                        message=f"refusing to destroy: the machine is no longer a managed machine "
                        f"of slot {action.slot}",
                    )
                if live.gone:
                    return self.result(action, Outcome.OK, message=f"already {live.state}")
                attempts += 1
                self.progress(action, "destroying", action.reason)
                try:
                    await self.client.destroy_machine(
                        self.app, action.machine_id, force=True, nonce=held.nonce
                    )
                except NotFound:
                    raise MachineGone("machine not found") from None
                held.released = True  # the lease goes with the machine
                await self.wait_destroyed(action.machine_id)
                message = "destroyed" + await self.prune_volumes(action)
                return self.result(action, Outcome.OK, attempts=attempts, message=message)
        except LeaseBusy as busy:
            return self.lease_held(action, busy)
        except (MachineGone, NotFound):
            return self.result(action, Outcome.OK, attempts=attempts, message="already gone")
        except PreconditionFailed as exc:
            gone = self.result(
                action, Outcome.OK, attempts=attempts, message="already being destroyed"
            )
            return await self.refused_412(action, exc, attempts, gone=gone)
        except FlyAPIError as exc:
            return self.failure(action, exc, attempts)

    async def prune_volumes(self, action: Destroy) -> str:
        """Destroy the machine's volumes (``prune_volumes: true``); a note for the result.

        A volume that cannot be destroyed (still attached: 412) is kept and named; the
        machine's destroy still succeeded.
        """
        notes = []
        for volume_id in action.volumes:
            try:
                await self.client.destroy_volume(self.app, volume_id)
            except NotFound:
                notes.append(f"volume {volume_id} already gone")
            except FlyAPIError as exc:
                notes.append(f"volume {volume_id} kept ({exc.error_class}: {exc.message})")
            else:
                notes.append(f"volume {volume_id} destroyed")
        return f"; {', '.join(notes)}" if notes else ""

    async def wait_destroyed(self, machine_id: str) -> None:
        """Wait (bounded by ``destroy_wait``) for ``destroyed``; never fails the action."""
        settings = self.ctx.settings
        deadline = self.clock.monotonic() + settings.destroy_wait
        while (remaining := deadline - self.clock.monotonic()) > 0:
            try:
                await self.client.wait_machine(
                    self.app,
                    machine_id,
                    state="destroyed",
                    timeout=min(settings.wait_chunk, remaining),
                )
            except NotFound:
                return
            except WaitTimeout:
                continue
            except FlyAPIError as exc:
                logger.info("%s/%s: not waiting for destroyed: %s", self.app, machine_id, exc)
                return
            else:
                return
