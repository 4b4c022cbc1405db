"""Creating one machine without ever making a duplicate (DESIGN.md 5, FLY_API.md 1.3).

``POST /machines`` with the slot's config plus a fresh ``reconciler/launch`` tag and the
ordinary short ``lease_ttl`` (the nonce comes back on the machine), then wait until it runs
healthily, refreshing that lease meanwhile like any other, and release it.  A create that
fails *ambiguously* (timeout, dropped connection, 408, 5xx) may have created the machine
anyway, so before trying again the machines are re-listed by the launch tag (after a short
delay), then the managed ones: a machine found is adopted, and the lease its lost response
carried is recognised as ours (see :meth:`CreateOps.own_create_lease`) so it can be released.
Nothing found is trusted only when the managed listing shows every machine known to exist
(listed when planning, or created in this run); a list that leaves one out (Fly has answered
empty lists, FLY_API.md 1.1) ends the create ``list_inconsistent`` rather than risk a
duplicate.  Attempts are bounded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from controller.core.errors import FlyAPIError, RateLimited
from controller.execution.leasing import HeldLease
from controller.execution.operations import (
    ExecutionContext,
    MachineOps,
    ambiguous,
    to_live_machine,
)
from controller.execution.outcomes import MachineResult, Outcome
from controller.execution.volumes import VolumePicker
from controller.execution.waiting import MachineGone, Unhealthy
from controller.flyapi import Machine, MachinesClient
from controller.model.actual import LAUNCH_KEY, MANAGED_KEY, MANAGED_VALUE
from controller.model.desired import DEFAULT_WAIT_TIMEOUT_S, DesiredGroup
from controller.planning.plan import Create, with_launch

logger = logging.getLogger(__name__)

__all__ = ["CreateOps", "Shared"]

#: Clock skew tolerated when recognising the lease of our own create (seconds).
_CREATE_LEASE_SKEW = 30.0


@dataclass
class Shared:
    """What the creates of one app's run share, across every part of a staged plan
    (:mod:`controller.execution.staging`)."""

    volumes: VolumePicker
    """The volumes handed out (groups with ``mounts:``): none is picked twice."""
    known: set[str] = field(default_factory=set)
    """Machines known to exist: listed when the plan was made, or created in this run.  A
    listing that leaves one of them out is not trusted to say a create did not happen."""

    @classmethod
    def new(cls, client: MachinesClient, app: str) -> Shared:
        return cls(VolumePicker(client, app))


class CreateOps(MachineOps):
    """The create operation (see the module docstring)."""

    def __init__(self, ctx: ExecutionContext, *, shared: Shared | None = None) -> None:
        super().__init__(ctx)
        self.shared = shared or Shared.new(ctx.client, ctx.desired.app)
        self.volumes = self.shared.volumes

    async def create(self, action: Create, group: DesiredGroup | None) -> MachineResult:
        """Apply one planned create; always returns its result (API errors included).

        The create's lease has the ordinary short TTL and is refreshed while the new machine
        boots and proves healthy, like any other lease, so a controller killed mid-create
        leaves the machine locked for seconds, not for the group's ``wait_timeout``.
        """
        wait_timeout = group.update.wait_timeout if group is not None else DEFAULT_WAIT_TIMEOUT_S
        smoke = group.update.smoke_period if group is not None else None
        launch_id = self.ctx.launch_ids()
        async with self.ctx.limiter:
            written = self.clock.now()
            made = await self.create_or_adopt(action, launch_id)
            if isinstance(made, MachineResult):
                return made
            machine, held, attempts = made
            self.shared.known.add(machine.id)
            if held is None:
                return await self.await_created(
                    action, machine, wait_timeout, attempts, written, smoke
                )
            try:
                async with self.ctx.leaser.hold(held):
                    return await self.await_created(
                        action, machine, wait_timeout, attempts, written, smoke
                    )
            except FlyAPIError as exc:  # the lease was lost while the machine booted
                return self.failure(action, exc, attempts, machine_id=machine.id)

    async def await_created(
        self,
        action: Create,
        machine: Machine,
        wait_timeout: float,
        attempts: int,
        written: float,
        smoke: float | None = None,
    ) -> MachineResult:
        """Wait until the new ``machine`` runs healthily; its result."""
        version = machine.version or ""
        self.progress(action, "waiting", f"waiting for version {version}", machine.id)
        try:
            await self.ctx.waiter.until_healthy(
                self.app,
                machine.id,
                version,
                running=not action.skip_launch,  # state: stopped: created, never booted
                wait_timeout=wait_timeout,
                just_created=True,
                since=written,
                on_step=lambda phase, quiet: self.progress(
                    action, phase, machine_id=machine.id, quiet=quiet
                ),
                smoke=smoke,
                config=action.config,
            )
        except Unhealthy as exc:
            return self.result(
                action,
                Outcome.UNHEALTHY,
                machine_id=machine.id,
                attempts=attempts,
                message=str(exc),
            )
        except MachineGone as exc:
            return self.result(
                action, Outcome.GONE, machine_id=machine.id, attempts=attempts, message=str(exc)
            )
        except FlyAPIError as exc:
            return self.failure(action, exc, attempts, machine_id=machine.id)
        return self.result(
            action,
            Outcome.OK,
            machine_id=machine.id,
            attempts=attempts,
            message=f"created (not started), version {version}"
            if action.skip_launch
            else f"created, running version {version}",
            version=version,
        )

    async def create_or_adopt(
        self, action: Create, launch_id: str
    ) -> tuple[Machine, HeldLease | None, int] | MachineResult:
        """Create the machine, or find the one an ambiguous failure created anyway.

        The machine, the lease its create carried (if any) and the number of creates sent; or
        the failure result once creating failed for good.
        """
        settings = self.ctx.settings
        config = with_launch(await self.volumes.config_for(action), launch_id)
        ttl = self.ctx.leaser.policy.ttl
        last: FlyAPIError | None = None
        for attempt in range(1, settings.create_attempts + 1):
            sent_at = self.clock.now()
            self.progress(action, "writing", f"create in {action.region}")
            try:
                machine = await self.client.create_machine(
                    self.app,
                    config=config,
                    region=action.region,
                    lease_ttl=ttl,
                    skip_launch=action.skip_launch,
                )
            except RateLimited as exc:  # never executed: wait as asked, send it again
                last = exc
                if attempt < settings.create_attempts:
                    await self.clock.sleep(self.rate_limited_delay(exc))
                continue
            except FlyAPIError as exc:
                if not ambiguous(exc):
                    return self.failure(action, exc, attempt)
                last = exc
            else:
                held = None
                if machine.nonce:
                    held = HeldLease(self.app, machine.id, machine.nonce, machine.version, None)
                return machine, held, attempt
            # The create may have happened (silent success): look for its launch tag first.
            await self.clock.sleep(settings.create_relist_delay * self.ctx.rng.uniform(1.0, 1.5))
            try:
                alive, unlisted = await self.find_launch(launch_id)
            except FlyAPIError as exc:
                return self.failure(action, exc, attempt)
            if alive:
                machine = min(alive, key=lambda m: (m.created_at or "", m.id))
                if len(alive) > 1:
                    logger.error(
                        "%s: %d machines carry launch tag %s", self.app, len(alive), launch_id
                    )
                self.progress(action, "adopted", "found after an ambiguous failure", machine.id)
                return machine, await self.own_create_lease(machine, sent_at, ttl), attempt
            if unlisted is not None:
                # The list left out a machine that exists: its "no machine with this launch
                # tag" proves nothing, and a second create could be a duplicate (DESIGN.md 3).
                return self.result(
                    action,
                    Outcome.LIST_INCONSISTENT,
                    attempts=attempt,
                    exc=last,
                    message=f"not sent again: machine list inconsistent: {unlisted} not listed, "
                    f"so the create that failed ({last.error_class}) may have made the machine",
                )
        if last is None:  # unreachable: create_attempts >= 1 and the loop only falls through
            raise RuntimeError("create loop ended without an attempt")  # after failures
        return self.failure(action, last, settings.create_attempts)

    async def find_launch(self, launch_id: str) -> tuple[list[Machine], str | None]:
        """The live machines carrying ``launch_id``, and a machine known to exist that the
        listings left out (None when they showed every known one).

        The listing by launch tag is checked against a second one, of the managed machines
        (which our creates are): a machine it shows with the tag is found after all, and when
        it leaves out a machine known to exist (listed when planning, or created in this run)
        the list is not trusted to say the create did not happen (Fly has answered empty lists,
        FLY_API.md 1.1).  A new app's first create has nothing to check the list against.
        """
        tagged = await self.client.list_machines(self.app, metadata={LAUNCH_KEY: launch_id})
        alive = [m for m in tagged if not to_live_machine(m).gone]
        if alive:
            return alive, None
        managed = await self.client.list_machines(self.app, metadata={MANAGED_KEY: MANAGED_VALUE})
        alive = [
            m for m in managed if not (live := to_live_machine(m)).gone and live.launch == launch_id
        ]
        missing = sorted(self.shared.known - {m.id for m in managed})
        return alive, (missing[0] if missing and not alive else None)

    def rate_limited_delay(self, exc: RateLimited) -> float:
        """How long to wait before sending a create Fly refused with 429: its ``Retry-After``
        (a floor), else a transient backoff, never longer than the policy's cap."""
        policy = self.ctx.policy
        hint = exc.retry_after if exc.retry_after is not None else policy.transient.delay(1)
        delay: float = min(policy.max_retry_after, max(hint, policy.transient.minimum))
        return delay

    async def own_create_lease(
        self, machine: Machine, sent_at: float, ttl: int
    ) -> HeldLease | None:
        """The nonce of the lease our lost create response carried, when provably ours.

        The create asked for a ``ttl``-second lease; until it expires nobody else can hold
        one.  So a live lease on the machine's first version, expiring where ours must
        (``sent_at + ttl``, within clock skew), owned by our identity when we know it, is
        ours: we read its nonce only to release it.  Anything else is left alone.
        """
        try:
            lease = await self.client.get_lease(self.app, machine.id)
        except FlyAPIError:
            return None
        if lease.nonce is None or lease.expires_at is None:
            return None
        if lease.version and machine.version and lease.version != machine.version:
            return None
        owner = self.ctx.leaser.owner
        if owner and lease.owner and lease.owner != owner:
            return None
        earliest = sent_at + ttl - _CREATE_LEASE_SKEW
        latest = self.clock.now() + ttl + _CREATE_LEASE_SKEW
        if not earliest <= lease.expires_at <= latest:
            return None
        return HeldLease(self.app, machine.id, lease.nonce, lease.version, lease.owner)
