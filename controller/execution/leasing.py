"""Machine leases for the executor: acquire, keep alive while working, always release.

A Fly lease is a cooperative per-machine lock (FLY_API.md 1.7, 4.1).  The executor holds one
around every mutation of an existing machine, and around a new machine until it proves healthy:
a **short TTL** (30 s) **refreshed** every 20 s by a background task while the machine is being
worked on, so a killed controller strands a lease for at most 30 s, not the 30 minutes flyctl
once used, and a normal update (stop, boot, 10 s smoke period) needs no refresh at all.

* :meth:`Leaser.try_acquire` makes one acquisition (retrying only ambiguous failures, which at
  worst leave a lease of our own that expires by itself).  Someone else's lease raises
  :class:`~controller.core.errors.LeaseHeld`; :meth:`Leaser.wait_delay` says how long to wait for
  it.  We never clear or reuse a lease we did not create.
* ``async with leaser.hold(held):`` keeps a lease we hold alive while the block runs (a
  background task refreshes it).  If a refresh shows the lease is gone
  (:class:`~controller.core.errors.LeaseLost`, someone else's
  :class:`~controller.core.errors.LeaseHeld`, or the machine's
  :class:`~controller.core.errors.NotFound`) the block is cancelled and that error is raised,
  as itself (never inside an ``ExceptionGroup``): the machine is abandoned for this pass.
* ``async with leaser.lease(app, machine_id) as held:`` acquires first, waiting for another
  holder's lease (optionally *without* holding the caller's ``slots`` meanwhile) until it
  expires, at most ``LeasePolicy.wait`` in all, then :class:`LeaseBusy`; then ``hold``.
* :meth:`Leaser.release` runs when either block ends, shielded from cancellation and bounded
  by a timeout, so a cancelled pass still lets go of its leases; "lease not found" is ignored.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TypeVar

import anyio

from controller.clock import Clock
from controller.core import defaults as d
from controller.core.errors import (
    FlyAPIError,
    LeaseHeld,
    LeaseLost,
    NotFound,
)
from controller.core.retry import Backoff, CheckThenRetry, RetryAfter, classify, lease_remaining
from controller.flyapi import Lease, MachinesClient

__all__ = ["HeldLease", "LeaseBusy", "LeasePolicy", "Leaser", "sole_exception"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    """Lease timings, seconds.  ``wait`` bounds the total wait for another holder.

    Built by :meth:`~controller.execution.rollout.ExecutorSettings.lease_policy`; the numbers
    the settings carry have no default here (:mod:`controller.core.defaults` has them)."""

    ttl: int
    refresh_every: float
    wait: float
    retry_cap: float
    """Longest single sleep while another holder keeps the lease (then look again)."""
    retry_min: float = d.LEASE_RETRY_MIN
    """Shortest sleep before looking again (an expiry in the past still waits this long)."""
    unknown_expiry: float = d.LEASE_UNKNOWN_EXPIRY
    """Sleep when the 409 does not say when the lease expires."""
    release_timeout: float = d.LEASE_RELEASE_TIMEOUT
    ambiguous_retries: int = d.LEASE_ACQUIRE_RETRIES
    """Extra tries of an acquisition that failed ambiguously (5xx, timeout, dropped)."""
    ambiguous_backoff: Backoff = field(
        default_factory=lambda: Backoff(
            base=d.LEASE_ACQUIRE_BACKOFF_BASE,
            cap=d.LEASE_ACQUIRE_BACKOFF_CAP,
            minimum=d.LEASE_ACQUIRE_BACKOFF_MIN,
        )
    )
    """Sleep between those tries."""
    description: str = "machine-reconciler"

    def __post_init__(self) -> None:
        if self.ttl < 1:
            raise ValueError("lease ttl must be at least 1 second")
        if not 0 < self.refresh_every < self.ttl:
            raise ValueError("lease refresh interval must be positive and shorter than the ttl")
        if self.wait < 0 or self.retry_cap <= 0 or self.retry_min < 0:
            raise ValueError("lease wait times must not be negative")


@dataclass(slots=True)
class HeldLease:
    """A lease we hold.  ``version`` is the machine version when it was granted.

    ``nonce`` can change once: a refresh that finds our lease lapsed gets a new one (of ours),
    which is then the one to release.  ``lost`` is set when the lease was lost while working;
    ``released`` when it is known to be gone already (the machine was destroyed).
    """

    app: str
    machine_id: str
    nonce: str
    version: str | None
    owner: str | None
    lost: FlyAPIError | None = None
    released: bool = False


class LeaseBusy(Exception):
    """Another holder kept the machine's lease for longer than ``LeasePolicy.wait``."""

    def __init__(self, last: LeaseHeld, *, tries: int, retry_after: float) -> None:
        holder = last.holder or "another holder"
        super().__init__(f"lease held by {holder} for longer than the lease wait")
        self.last = last
        self.tries = tries
        self.retry_after = retry_after


class Leaser:
    """Acquire / keep / release leases through one client (see the module docstring)."""

    def __init__(
        self,
        client: MachinesClient,
        *,
        clock: Clock,
        rng: random.Random,
        policy: LeasePolicy,
    ) -> None:
        self._client = client
        self._clock = clock
        self._rng = rng
        self.policy = policy
        self.owner: str | None = None
        """Our own identity as Fly reports it on our leases (learnt from the first one)."""

    # ------------------------------------------------------------------ acquire

    async def try_acquire(self, app: str, machine_id: str) -> HeldLease:
        """One acquisition.  Raises :class:`LeaseHeld` (someone else holds it) or the error.

        Ambiguous failures are retried a few times: if the first request did create a lease,
        the retry answers 409 held by *us*, which then simply expires after ``ttl``.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                lease = await self._client.acquire_lease(
                    app, machine_id, ttl=self.policy.ttl, description=self.policy.description
                )
            except LeaseHeld:
                raise
            except FlyAPIError as exc:
                decision = classify(exc, attempt=attempt, idempotent=False, rng=self._rng)
                retry = isinstance(decision, RetryAfter | CheckThenRetry)
                if not retry or attempt > self.policy.ambiguous_retries:
                    raise
                await self._clock.sleep(self.policy.ambiguous_backoff.delay(attempt, self._rng))
                continue
            return self._held(app, machine_id, lease)

    def _held(self, app: str, machine_id: str, lease: Lease) -> HeldLease:
        if lease.nonce is None:
            raise FlyAPIError(
                method="POST",
                path=f"/v1/apps/{app}/machines/{machine_id}/lease",
                status=200,
                detail="lease granted without a nonce",
            )
        if lease.owner and self.owner is None:
            self.owner = lease.owner
        return HeldLease(app, machine_id, lease.nonce, lease.version, lease.owner)

    def wait_delay(self, exc: LeaseHeld) -> float:
        """Seconds to wait before asking again: until the holder's ``expires_at``, capped."""
        remaining = lease_remaining(exc, self._clock.now())
        if remaining is None:
            return self.policy.unknown_expiry
        # Fly prints whole seconds: look again just after the printed expiry.
        return min(self.policy.retry_cap, max(self.policy.retry_min, remaining + 0.5))

    def expiry_hint(self, exc: LeaseHeld) -> float:
        """Seconds until the holder's lease expires (for ``retry_after``), at least 1."""
        remaining = lease_remaining(exc, self._clock.now())
        if remaining is None:
            return self.policy.unknown_expiry
        return max(1.0, math.ceil(remaining))

    # ------------------------------------------------------------------ keep and release

    @asynccontextmanager
    async def hold(self, held: HeldLease) -> AsyncIterator[HeldLease]:
        """Keep ``held`` alive while the block runs; release it afterwards, always.

        If the lease is lost before the block finishes, the block is cancelled and the loss
        (``LeaseLost``, ``LeaseHeld``, ``NotFound``) is raised, chained to whatever the block
        raised meanwhile; else the block's own exception passes through unchanged.  A block that
        finished wins over a loss noticed at the same moment.
        """
        finished = False
        failure: BaseException | None = None
        try:
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._keep_alive, held, tg.cancel_scope)
                    yield held
                    finished = True
                    tg.cancel_scope.cancel()
            except BaseExceptionGroup as group:  # the block's error, wrapped by the task group
                failure = sole_exception(group)
        finally:
            await self.release(held)
        if finished:
            return
        if held.lost is not None:
            raise held.lost from failure
        if failure is not None:
            raise failure
        # Only a loss cancels the block from inside (an outer cancellation propagates above).
        raise RuntimeError("leased block ended without finishing")  # pragma: no cover

    @asynccontextmanager
    async def lease(
        self,
        app: str,
        machine_id: str,
        *,
        slots: Callable[[], AbstractAsyncContextManager[object]] | None = None,
        on_wait: Callable[[LeaseHeld, float], None] | None = None,
    ) -> AsyncIterator[HeldLease]:
        """Acquire the machine's lease and :meth:`hold` it while the block runs.

        ``slots()`` is entered around every acquisition and stays entered while the block runs
        (the caller's concurrency slots; it may raise to refuse the work once they are held).
        Someone else's lease is waited for *outside* ``slots`` until it expires, at most
        ``policy.wait`` counted from the first "held by" (``on_wait(held_by, delay)`` is told
        before each wait); then :class:`LeaseBusy`.
        """
        deadline: float | None = None
        tries = 0
        while True:  # bounded: ``deadline`` ends it
            tries += 1
            async with slots() if slots is not None else nullcontext():
                try:
                    held = await self.try_acquire(app, machine_id)
                except LeaseHeld as exc:
                    busy = exc
                else:
                    async with self.hold(held):
                        yield held
                    return
            now = self._clock.monotonic()
            if deadline is None:
                deadline = now + self.policy.wait
            if now >= deadline:
                raise LeaseBusy(busy, tries=tries, retry_after=self.expiry_hint(busy))
            delay = min(self.wait_delay(busy), deadline - now)
            if on_wait is not None:
                on_wait(busy, delay)
            await self._clock.sleep(delay)

    async def _keep_alive(self, held: HeldLease, scope: anyio.CancelScope) -> None:
        while True:
            await self._clock.sleep(self.policy.refresh_every)
            try:
                lease = await self._client.refresh_lease(
                    held.app, held.machine_id, nonce=held.nonce, ttl=self.policy.ttl
                )
            except LeaseLost as exc:
                # Ours had lapsed and Fly made a fresh lease, for us: release that one.
                if exc.new_nonce:
                    held.nonce = exc.new_nonce
                held.lost = exc
            except (LeaseHeld, NotFound) as exc:
                held.lost = exc
            except FlyAPIError as exc:
                # Transient (already retried by the client): the next refresh tries again.
                logger.warning(
                    "lease refresh for %s/%s failed: %s", held.app, held.machine_id, exc.message
                )
                continue
            else:
                if lease.version:
                    held.version = lease.version
                continue
            logger.warning(
                "lost the lease on %s/%s: %s", held.app, held.machine_id, held.lost.error_class
            )
            scope.cancel()
            return

    async def release(self, held: HeldLease) -> None:
        """Release ``held``; shielded from cancellation, bounded, "not found" ignored."""
        if held.released:
            return
        held.released = True
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.policy.release_timeout):
            try:
                await self._client.release_lease(held.app, held.machine_id, nonce=held.nonce)
            except NotFound:  # lease expired, or the machine is gone with its lease
                pass
            except FlyAPIError as exc:
                logger.warning(
                    "could not release the lease on %s/%s (it expires in %ss by itself): %s",
                    held.app,
                    held.machine_id,
                    self.policy.ttl,
                    exc.message,
                )


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a task group wrapped, unwrapped (nested groups too); else ``group``.

    The leased block is the only code that can fail inside :meth:`Leaser.hold`'s task group
    (the refresh task reports through ``HeldLease.lost``), so callers see ``LeaseLost`` or
    their own error as itself, not an ``ExceptionGroup`` they would have to ``except*``.
    """
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup) and len(found.exceptions) == 1:
        found = found.exceptions[0]
    return found
