"""Client-side pacing: Fly's per-machine/per-action limits and the global cap, on a fake clock."""

from __future__ import annotations

import anyio
import pytest

from controller.flyapi import RateLimiter, RateLimits
from controller.flyapi.ratelimit import _PRUNE_AT
from controller.testing import FakeClock
from tests.flyapi.conftest import MakeClient
from tests.flyapi.fakes import Script, lease_json, machine_json

APP = "acme-web"
CONFIG = {"image": "img"}


async def test_fourth_rapid_update_of_one_machine_waits_a_second(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """1/s with burst 3: three updates go at once, the fourth waits 1 s."""
    script = Script(default=(200, machine_json("m1")))
    client = make_client(script, limits=RateLimits())
    for _ in range(4):
        await client.update_machine(APP, "m1", config=CONFIG)
    assert fake_clock.sleeps == [1.0]
    assert fake_clock.monotonic() == pytest.approx(1_001.0)


async def test_machines_and_actions_have_separate_buckets(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """Updates of other machines and other actions on the same machine do not wait."""
    script = Script(default=(200, machine_json("m1")))
    client = make_client(script, limits=RateLimits())
    for machine in ("m1", "m2", "m3"):
        for _ in range(3):
            await client.update_machine(APP, machine, config=CONFIG)
    for _ in range(3):
        await client.stop_machine(APP, "m1")
    assert fake_clock.sleeps == []


async def test_get_machine_allows_ten_then_five_per_second(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """Get machine: burst 10, then one every 0.2 s."""
    script = Script(default=(200, machine_json("m1")))
    client = make_client(script, limits=RateLimits())
    for _ in range(12):
        await client.get_machine(APP, "m1")
    assert fake_clock.sleeps == [pytest.approx(0.2), pytest.approx(0.2)]


async def test_acquire_and_refresh_share_the_lease_bucket(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """Acquire and refresh are one Fly action (POST .../lease): the 4th of either waits."""
    script = Script(default=(200, lease_json("n")))
    client = make_client(script, limits=RateLimits())
    await client.acquire_lease(APP, "m1", ttl=15)
    for _ in range(3):
        await client.refresh_lease(APP, "m1", nonce="n", ttl=15)
    assert fake_clock.sleeps == [1.0]


async def test_global_cap_spans_all_machines(
    make_client: MakeClient, fake_clock: FakeClock
) -> None:
    """The global bucket paces requests even when every machine has tokens."""
    script = Script(default=(200, machine_json("m1")))
    limits = RateLimits(global_rate=2.0, global_burst=2)
    client = make_client(script, limits=limits)
    for machine in ("m1", "m2", "m3", "m4"):
        await client.get_machine(APP, machine)
    assert fake_clock.sleeps == [0.5, 0.5]


def test_reservations_queue_in_arrival_order(fake_clock: FakeClock) -> None:
    """Back-to-back reservations of one key get waits 0, 0, 0, 1, 2 (first come, first served)."""
    limiter = RateLimiter(RateLimits(), fake_clock)
    key = ("app/m1", "machines.update")
    assert [limiter.reserve(key, "action") for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]


async def test_concurrent_callers_are_paced(fake_clock: FakeClock) -> None:
    """Five concurrent acquirers of one key finish after 2 s of virtual time, no busy loop."""
    limiter = RateLimiter(RateLimits(), fake_clock)

    async def one() -> None:
        await limiter.acquire(("app/m1", "machines.update"), "action")

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert fake_clock.monotonic() == pytest.approx(1_002.0)
    assert len(fake_clock.sleeps) == 2


async def test_disabled_limits_never_wait(fake_clock: FakeClock) -> None:
    """RateLimits.disabled() turns pacing off."""
    limiter = RateLimiter(RateLimits.disabled(), fake_clock)
    for _ in range(100):
        assert await limiter.acquire(("a/m", "machines.update"), "action") == 0.0
    assert fake_clock.sleeps == []


def test_full_buckets_are_forgotten_to_bound_memory(fake_clock: FakeClock) -> None:
    """However many machines are seen, idle buckets are pruned."""
    limiter = RateLimiter(RateLimits(global_rate=1e6, global_burst=10**7), fake_clock)
    for i in range(_PRUNE_AT * 3):
        limiter.reserve((f"app/m{i}", "machines.get"), "read")
        fake_clock.advance(0.01)
    assert limiter.tracked() <= _PRUNE_AT
