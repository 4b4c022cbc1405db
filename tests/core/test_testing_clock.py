"""The virtual test clock (controller.testing): right under concurrency, deterministic, no driver.

Every async test here runs on the AutojumpEventLoop that tests/conftest.py installs; the few
synchronous ones start their own loops to show the loop factory and the fallback.
"""

from __future__ import annotations

import asyncio
import random

import anyio
import anyio.lowlevel
import pytest

from controller.clock import Clock
from controller.testing import AutojumpEventLoop, FakeClock, new_event_loop


async def test_three_concurrent_five_second_sleepers_move_the_clock_by_five() -> None:
    """Concurrent sleeps overlap: 3 x 5 s at once is 5 s of virtual time, not 15 s."""
    clock = FakeClock()
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(5)
        woke.append(clock.monotonic())

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(sleeper)
    assert woke == [1_005.0, 1_005.0, 1_005.0]
    assert clock.monotonic() == 1_005.0
    assert clock.now() == 1_700_000_005.0
    assert clock.sleeps == [5.0, 5.0, 5.0]


async def test_sleepers_wake_in_deadline_order_not_arrival_order() -> None:
    clock = FakeClock(start=0.0)
    order: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        order.append((name, clock.monotonic()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "c", 3.0)
        tg.start_soon(sleeper, "a", 1.0)
        tg.start_soon(sleeper, "b", 2.0)
        tg.start_soon(sleeper, "a2", 1.0)  # a tie: arrival order decides
    assert order == [("a", 1.0), ("a2", 1.0), ("b", 2.0), ("c", 3.0)]


async def test_a_chain_of_wake_ups_runs_on_exact_virtual_time() -> None:
    """A wakes B through an event, B sleeps again, C sleeps long: each sees its exact time."""
    clock = FakeClock(start=0.0)
    seen: list[tuple[str, float]] = []
    a_done = anyio.Event()

    async def a() -> None:
        await clock.sleep(1)
        seen.append(("a", clock.monotonic()))
        a_done.set()

    async def b() -> None:
        await a_done.wait()  # blocked on an event, not on the clock: the clock still jumps
        await clock.sleep(2)
        seen.append(("b", clock.monotonic()))
        await clock.sleep(0.5)
        seen.append(("b", clock.monotonic()))

    async def c() -> None:
        await clock.sleep(10)
        seen.append(("c", clock.monotonic()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(c)
        tg.start_soon(b)
        tg.start_soon(a)
    assert seen == [("a", 1.0), ("b", 3.0), ("b", 3.5), ("c", 10.0)]


async def test_a_cancelled_sleeper_is_forgotten() -> None:
    """Cancelling a 100 s sleeper means time never jumps to its deadline."""
    clock = FakeClock(start=0.0)
    outcome: list[str] = []

    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def long_sleeper() -> None:
            with scope:
                await clock.sleep(100)
                outcome.append("woke")  # never reached
            outcome.append("cancelled")

        tg.start_soon(long_sleeper)
        await clock.sleep(1)
        scope.cancel()
        await clock.sleep(5)
    assert outcome == ["cancelled"]
    assert clock.monotonic() == 6.0


async def test_time_never_moves_while_a_task_can_run() -> None:
    """The clock jumps only when every task waits: a busy task holds virtual time still."""
    clock = FakeClock(start=0.0)
    woke = anyio.Event()

    async def sleeper() -> None:
        await clock.sleep(1)
        woke.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        for _ in range(200):
            await anyio.lowlevel.checkpoint()
        assert clock.monotonic() == 0.0
        assert not woke.is_set()
        await woke.wait()  # now the test task waits too: the clock jumps
    assert clock.monotonic() == 1.0


async def test_advance_wakes_the_sleepers_it_passes() -> None:
    clock = FakeClock(start=0.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, "short", 10.0)
        tg.start_soon(sleeper, "long", 60.0)
        await anyio.lowlevel.checkpoint()  # both are asleep now
        clock.advance(15)
        await anyio.lowlevel.checkpoint()
        await anyio.lowlevel.checkpoint()
        assert woke == [("short", 15.0)]  # woken by hand, at the time it was advanced to
    assert woke == [("short", 15.0), ("long", 60.0)]


async def test_zero_and_negative_sleeps_are_checkpoints() -> None:
    clock = FakeClock()
    await clock.sleep(0)
    await clock.sleep(-3)
    assert clock.monotonic() == 1_000.0
    assert clock.sleeps == [0.0, 0.0]


async def test_two_clocks_on_one_loop_are_independent_timelines() -> None:
    """The clock whose next sleeper is soonest (by its own time) jumps first."""
    fast, slow = FakeClock(start=0.0), FakeClock(start=500.0)
    order: list[str] = []

    async def on(clock: FakeClock, name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(on, slow, "slow", 2.0)
        tg.start_soon(on, fast, "fast", 1.0)
    assert order == ["fast", "slow"]
    assert (fast.monotonic(), slow.monotonic()) == (1.0, 502.0)


async def test_the_fake_clock_is_a_clock_and_the_suite_runs_on_the_autojump_loop() -> None:
    clock = FakeClock()
    assert isinstance(clock, Clock)
    assert isinstance(asyncio.get_running_loop(), AutojumpEventLoop)
    await clock.sleep(3)
    assert clock.monotonic() == 1_003.0


def _scenario(seed: int) -> list[tuple[int, float]]:
    """Ten workers with seeded random sleeps, run on a fresh loop: the trace of wake-ups."""

    async def main() -> list[tuple[int, float]]:
        clock = FakeClock(start=0.0)
        rng = random.Random(seed)
        trace: list[tuple[int, float]] = []

        async def worker(n: int, delays: list[float]) -> None:
            for delay in delays:
                await clock.sleep(delay)
                trace.append((n, clock.monotonic()))

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(worker, n, [rng.uniform(0, 30) for _ in range(20)])
        return trace

    return anyio.run(main, backend_options={"loop_factory": new_event_loop})


def test_the_same_program_gives_the_same_times_on_every_run() -> None:
    first, second = _scenario(seed=5), _scenario(seed=5)
    assert first == second
    assert len(first) == 200
    assert [t for _, t in first] == sorted(t for _, t in first)  # time never goes back
    assert _scenario(seed=6) != first


def test_without_the_autojump_loop_sleep_warns_and_never_adds_concurrent_sleeps() -> None:
    async def main() -> float:
        clock = FakeClock(start=0.0)
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(clock.sleep, 5)
        return clock.monotonic()

    with pytest.warns(RuntimeWarning, match="outside an AutojumpEventLoop"):
        elapsed = anyio.run(main)  # a plain asyncio loop
    assert elapsed == 5.0


def test_a_clock_works_without_any_loop() -> None:
    clock = FakeClock(start=10.0, wall_start=100.0)
    clock.advance(2.5)
    assert (clock.monotonic(), clock.now()) == (12.5, 102.5)
    with pytest.raises(ValueError, match="never goes backwards"):
        clock.advance(-1)


def test_sleepers_left_on_a_closed_loop_do_not_block_the_next_one() -> None:
    """A clock reused after its loop closed forgets the sleepers that loop abandoned."""
    clock = FakeClock(start=0.0)
    loop = new_event_loop()
    loop.set_exception_handler(lambda _loop, _context: None)  # "Task was destroyed but pending"
    try:
        loop.create_task(clock.sleep(50))
        loop.run_until_complete(asyncio.sleep(0))  # the task is asleep on the clock now
    finally:
        loop.close()

    async def main() -> float:
        await clock.sleep(1)
        return clock.monotonic()

    assert anyio.run(main, backend_options={"loop_factory": new_event_loop}) == 1.0
