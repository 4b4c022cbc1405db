"""Leases: wait for other holders (never steal), give up politely, always release our own."""

from __future__ import annotations

import anyio
import pytest

from controller.execution.executor import ExecutorSettings
from controller.execution.outcomes import Event, Outcome, Progress
from tests.executor.support import IMAGE_V2, OTHER_OWNER, World, desired, world

NONCE = "fly-machine-lease-nonce"


async def test_lease_held_for_a_few_seconds_is_waited_for_then_converges() -> None:
    """Another holder's 8 s lease: we wait past its expiry, never clear it, then update."""
    async with world() as w:
        assert (await w.reconcile(desired())).converged
        target = w.machines()[0]["id"]
        held = w.emulator.external_writer(
            {"kind": "hold_lease", "app": "web", "machine_id": target, "seconds": 8}
        )
        expires_at = w.clock.monotonic() + 8
        mark = w.mark()
        result = await w.reconcile(desired(image=IMAGE_V2))
        assert result.converged, [r.describe() for r in result.results]
        lease_calls = w.requests(path=rf"/machines/{target}/lease$", since=mark)
        acquisitions = [e for e in lease_calls if NONCE not in e["headers_present"]]
        assert acquisitions[0]["status"] == 409
        granted = next(e for e in acquisitions if e["status"] == 201)
        assert granted["at"] >= expires_at
        assert all(e["status"] == 409 for e in acquisitions if e["at"] < expires_at)
        assert all(e["method"] != "DELETE" or e["at"] > granted["at"] for e in lease_calls)
        assert w.progress("lease_wait")
        assert held["owner"] == OTHER_OWNER
        assert w.live_leases() == []


async def test_lease_held_past_lease_wait_is_left_alone_as_lease_held() -> None:
    """A 2-minute lease and lease_wait=5s: outcome lease_held, the holder keeps its lease."""
    async with world(settings=ExecutorSettings(lease_wait=5)) as w:
        assert (await w.reconcile(desired())).converged
        target = w.machines()[0]["id"]
        held = w.emulator.external_writer(
            {"kind": "hold_lease", "app": "web", "machine_id": target, "seconds": 120}
        )
        mark = w.mark()
        result = await w.reconcile(desired(image=IMAGE_V2))
        blocked = result.by_outcome(Outcome.LEASE_HELD)
        assert [r.machine_id for r in blocked] == [target]
        assert blocked[0].error_class == "lease_held"
        assert blocked[0].retry_after is not None
        # The holder's remaining time when we gave up: after its lease wait the machine queues
        # for its group's window again, behind machines that started meanwhile (~2 x 12 s).
        assert 60 < blocked[0].retry_after <= 121
        assert blocked[0].attempts == 2  # asked at 0 s and again when lease_wait ran out
        assert "someone-else@fly.io" in blocked[0].message
        assert result.lease_blocked
        assert not result.converged
        assert {r.outcome for r in result.results if r.machine_id != target} == {Outcome.OK}
        assert not w.requests("DELETE", rf"/machines/{target}/lease$", since=mark)
        [lease] = w.live_leases()
        assert (lease["owner"], lease["nonce"]) == (OTHER_OWNER, held["nonce"])
        [untouched] = [m for m in w.machines() if m["id"] == target]
        assert untouched["config"]["image"] != IMAGE_V2


@pytest.mark.parametrize("phase", ["update", "create"])
async def test_cancelled_pass_releases_every_lease(phase: str) -> None:
    """Cancelling a pass mid-rollout still releases every lease it held (shielded finally)."""
    scope = anyio.CancelScope()
    armed = False

    def cancel_when_checking(event: Event) -> None:
        if armed and isinstance(event, Progress) and event.phase == "checking":
            scope.cancel()

    groups = {"web": {"regions": {"ams": 4}, "update": {"max_unavailable": 2}}}
    async with world(on_event=cancel_when_checking) as w:
        if phase == "update":
            assert (await w.reconcile(desired(groups=groups))).converged
        mark = w.mark()
        armed = True
        with scope:
            await w.reconcile(desired(image=IMAGE_V2, groups=groups))
        assert scope.cancelled_caught
        cancelled_at = w.clock.monotonic()
        assert w.live_leases() == []
        if phase == "update":  # one batch of max_unavailable=2 was in flight
            granted = w.requests("POST", r"/lease$", since=mark, status=201)
            granted = [e for e in granted if NONCE not in e["headers_present"]]
            in_flight = 2
        else:  # all four creates (create_concurrency 4) were in flight
            granted = w.requests("POST", r"/machines$", since=mark, status=200)
            in_flight = 4
        released = w.requests("DELETE", r"/lease$", since=mark, status=200)
        assert len(released) == len(granted) == in_flight
        assert all(e["at"] <= cancelled_at for e in released)


async def test_lease_lost_while_working_aborts_that_machine_and_releases() -> None:
    """Our lease lapsed mid-work: the refresh gets a new nonce, the machine is requeued."""
    armed = False
    w_ref: list[World] = []

    def lapse(event: Event) -> None:
        if armed and isinstance(event, Progress) and event.phase == "waiting":
            w_ref[0].clock.advance(20)  # longer than the 15 s TTL: our lease expires

    # A short TTL refreshed often, so the refresh falls inside the work (the mechanism under
    # test, not the default timings).
    settings = ExecutorSettings(lease_ttl=15, lease_refresh=5)
    async with world(on_event=lapse, settings=settings) as w:
        w_ref.append(w)
        groups = {"web": {"regions": {"ams": 1}}}
        assert (await w.reconcile(desired(groups=groups))).converged
        armed = True
        result = await w.reconcile(desired(image=IMAGE_V2, groups=groups))
        [done] = result.results
        assert done.outcome is Outcome.REQUEUE, done.describe()
        assert done.error_class == "lease_lost"
        assert w.live_leases() == []  # the replacement lease the refresh created was released
