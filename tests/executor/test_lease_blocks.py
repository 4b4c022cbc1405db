"""The lease context managers themselves, over HTTP against the emulator.

``Leaser.hold`` (keep a held lease alive while a block runs, release after) and
``Leaser.lease`` (acquire, waiting for another holder outside the caller's slots, then hold):
errors come out as themselves, never inside an ``ExceptionGroup``; a lost lease cancels the
block; the lease is released however the block ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from controller.core.errors import LeaseHeld, LeaseLost
from controller.execution.executor import ExecutorSettings
from controller.execution.leasing import LeaseBusy, sole_exception
from tests.executor.support import OTHER_OWNER, World, desired, world

GROUPS = {"web": {"regions": {"ams": 1}}}


async def _one_machine(w: World) -> str:
    assert (await w.reconcile(desired(groups=GROUPS))).converged
    [machine] = w.machines()
    return str(machine["id"])


async def test_an_error_in_the_block_comes_out_as_itself_and_the_lease_is_released() -> None:
    async with world() as w:
        target = await _one_machine(w)
        leaser = w.executor.leaser
        held = await leaser.try_acquire("web", target)
        assert [lease["nonce"] for lease in w.live_leases()] == [held.nonce]
        with pytest.raises(ValueError, match="boom") as caught:
            async with leaser.hold(held):
                raise ValueError("boom")
        assert type(caught.value) is ValueError  # not an ExceptionGroup around it
        assert w.live_leases() == []


async def test_a_finished_block_returns_its_value_and_releases() -> None:
    async with world() as w:
        target = await _one_machine(w)
        leaser = w.executor.leaser
        mark = w.mark()
        async with leaser.lease("web", target) as held:
            assert held.machine_id == target
            seen = [lease["nonce"] for lease in w.live_leases()]
        assert seen == [held.nonce]
        assert w.live_leases() == []
        calls = [(e["method"], e["status"]) for e in w.requests(path=r"/lease$", since=mark)]
        assert calls == [("POST", 201), ("DELETE", 200)]


async def test_a_lapsed_lease_cancels_the_block_and_raises_lease_lost_as_itself() -> None:
    """Refresh finds our lease expired: Fly made a new one for us; that one is released."""
    settings = ExecutorSettings(lease_ttl=15, lease_refresh=5)
    async with world(settings=settings) as w:
        target = await _one_machine(w)
        leaser = w.executor.leaser
        reached_end = False

        async def work() -> None:
            nonlocal reached_end
            async with leaser.lease("web", target):
                w.clock.advance(20)  # past the 15 s TTL before the first refresh
                await w.clock.sleep(60)  # the refresh at 5 s cancels this
                reached_end = True

        with pytest.raises(LeaseLost) as caught:
            await work()
        assert type(caught.value) is LeaseLost
        assert not reached_end
        assert w.live_leases() == []  # the replacement lease the refresh created was released


async def test_someone_else_taking_the_lease_cancels_the_block_with_lease_held() -> None:
    async with world() as w:
        target = await _one_machine(w)
        leaser = w.executor.leaser

        async def work() -> None:
            async with leaser.lease("web", target):
                w.emulator.external_writer(
                    {"kind": "hold_lease", "app": "web", "machine_id": target, "seconds": 300}
                )
                await w.clock.sleep(600)

        with pytest.raises(LeaseHeld) as caught:
            await work()
        assert type(caught.value) is LeaseHeld
        assert caught.value.holder == OTHER_OWNER
        [lease] = w.live_leases()  # theirs, untouched
        assert lease["owner"] == OTHER_OWNER


async def test_lease_waits_for_another_holder_outside_the_callers_slots() -> None:
    """Slots are held only around each acquisition, never while sleeping; then LeaseBusy."""
    async with world(settings=ExecutorSettings(lease_wait=10)) as w:
        target = await _one_machine(w)
        w.emulator.external_writer(
            {"kind": "hold_lease", "app": "web", "machine_id": target, "seconds": 120}
        )
        leaser = w.executor.leaser
        entered: list[float] = []
        exited: list[float] = []
        waits: list[tuple[str | None, float]] = []

        @asynccontextmanager
        async def slots() -> AsyncIterator[None]:
            entered.append(w.clock.monotonic())
            yield
            exited.append(w.clock.monotonic())

        start = w.clock.monotonic()
        with pytest.raises(LeaseBusy) as caught:
            async with leaser.lease(
                "web", target, slots=slots, on_wait=lambda e, d: waits.append((e.holder, d))
            ):
                pytest.fail("the lease is someone else's")  # pragma: no cover
        assert caught.value.tries == len(entered) == len(exited) >= 2
        assert all(holder == OTHER_OWNER for holder, _ in waits)
        slept = sum(delay for _, delay in waits)
        assert slept == pytest.approx(10, abs=0.5)  # lease_wait in all
        assert w.clock.monotonic() - start == pytest.approx(slept, abs=0.5)
        # Each slot was given back before the wait that followed it.
        assert all(out <= nxt for out, nxt in zip(exited, entered[1:], strict=False))


async def test_an_outer_cancellation_still_releases_the_lease() -> None:
    async with world() as w:
        target = await _one_machine(w)
        leaser = w.executor.leaser
        with anyio.CancelScope() as scope:
            async with leaser.lease("web", target):
                scope.cancel()  # the pass is cancelled from outside while the block works
                await w.clock.sleep(60)
        assert scope.cancelled_caught
        assert w.live_leases() == []


def test_sole_exception_unwraps_one_error_and_keeps_real_groups() -> None:
    error = LookupError("x")
    assert sole_exception(BaseExceptionGroup("g", [ExceptionGroup("inner", [error])])) is error
    several = ExceptionGroup("g", [ValueError("a"), KeyError("b")])
    assert sole_exception(several) is several


def test_every_wait_for_a_held_lease_starts_from_the_same_remaining_time() -> None:
    """lease_remaining feeds the leaser's wait and retry hint and classify's requeue delay."""
    import random
    from datetime import UTC, datetime

    from controller.core.retry import Requeue, RetryPolicy, classify, lease_remaining
    from controller.execution.leasing import LeasePolicy, Leaser
    from controller.testing import FakeClock

    clock = FakeClock()
    leaser = Leaser(
        None,  # type: ignore[arg-type]  # these methods never call the API
        clock=clock,
        rng=random.Random(0),
        policy=LeasePolicy(ttl=30, refresh_every=20, wait=60, retry_cap=15),
    )
    expires = datetime.fromtimestamp(clock.now() + 7.2, tz=UTC)
    held = LeaseHeld(holder=OTHER_OWNER, expires_at=expires, method="POST", path="/", status=409)
    assert lease_remaining(held, clock.now()) == pytest.approx(7.2)
    assert leaser.wait_delay(held) == pytest.approx(7.7)  # just after the printed expiry
    assert leaser.expiry_hint(held) == 8
    decision = classify(held, now=clock.now(), policy=RetryPolicy())
    assert isinstance(decision, Requeue)
    assert decision.after == pytest.approx(7.2)
    unknown = LeaseHeld(method="POST", path="/", status=409)
    assert lease_remaining(unknown, clock.now()) is None
    assert leaser.wait_delay(unknown) == leaser.policy.unknown_expiry
    assert lease_remaining(held, None) is None
