"""Sharding by a stable hash, and the scheduler wrappers (fake clock, then apscheduler)."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import anyio
import pytest

from controller.daemon.scheduling import ApschedulerTicker, ClockTicker, in_shard, shard_of
from controller.settings import DaemonSettings
from controller.testing import FakeClock


def test_shards_are_stable_known_values() -> None:
    """sha256-based: these values never change between processes or releases."""
    assert [shard_of("acme-web", c) for c in (1, 2, 3, 5, 16)] == [0, 0, 1, 2, 0]
    assert [shard_of("acme-jobs", c) for c in (1, 2, 3, 5, 16)] == [0, 1, 2, 1, 3]
    assert [shard_of("web", c) for c in (1, 2, 3, 5, 16)] == [0, 1, 0, 0, 9]


def test_shards_do_not_depend_on_pythons_hash_seed() -> None:
    """Two interpreters with different PYTHONHASHSEED agree on every shard."""
    code = (
        "from controller.daemon.scheduling import shard_of; "
        "print([shard_of(f'app-{i}', 7) for i in range(50)])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip() == str([shard_of(f"app-{i}", 7) for i in range(50)])


def test_every_app_belongs_to_exactly_one_shard() -> None:
    """For any shard count, the shards partition the apps, roughly evenly."""
    names = [f"app-{i}" for i in range(2000)]
    for count in (1, 2, 3, 8):
        owners: Counter[int] = Counter()
        for name in names:
            mine = [i for i in range(count) if in_shard(name, i, count)]
            assert len(mine) == 1
            owners[mine[0]] += 1
        assert min(owners.values()) > 0.8 * len(names) / count


def test_shard_settings_are_validated() -> None:
    """shard_index must be below shard_count; a count of 0 is refused."""
    with pytest.raises(ValueError, match="must be below shard_count"):
        DaemonSettings(_env_file=None, shard_index=2, shard_count=2)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        DaemonSettings(_env_file=None, shard_count=0)
    with pytest.raises(ValueError, match="at least 1"):
        shard_of("x", 0)


async def test_clock_ticker_runs_every_interval_on_virtual_time() -> None:
    """ClockTicker calls the job every interval (+ jitter from the injected rng)."""
    clock = FakeClock()
    runs: list[float] = []

    async def job() -> None:
        runs.append(clock.monotonic())

    start = clock.monotonic()
    with anyio.move_on_after(5):  # wall-time guard only; virtual time jumps
        async with anyio.create_task_group() as tg:
            tg.start_soon(ClockTicker(clock, 60.0, jitter=6.0, rng=random.Random(4)).run, job)
            while len(runs) < 5:
                await clock.sleep(1)
            tg.cancel_scope.cancel()
    gaps = [b - a for a, b in zip([start, *runs], runs, strict=False)]
    jitter = random.Random(4)
    assert gaps == pytest.approx([60.0 + jitter.uniform(0, 6.0) for _ in gaps])


async def test_clock_ticker_never_overlaps_a_slow_job(fake_clock: FakeClock) -> None:
    """A job longer than the interval is not started twice at once (max_instances=1)."""
    running = 0
    peak = 0
    calls = 0

    async def job() -> None:
        nonlocal running, peak, calls
        running += 1
        peak = max(peak, running)
        await fake_clock.sleep(25)
        running -= 1
        calls += 1

    with anyio.move_on_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ClockTicker(fake_clock, 10.0).run, job)
            while calls < 3:
                await fake_clock.sleep(1)  # wait on the clock: a busy loop never lets it jump
            tg.cancel_scope.cancel()
    assert peak == 1


async def test_apscheduler_job_is_configured_one_instance_coalesced() -> None:
    """The production ticker: an AsyncIOScheduler interval job, max_instances=1, coalesce."""
    ticker = ApschedulerTicker(0.05, jitter=0.01)
    fired = anyio.Event()
    count = 0

    async def job() -> None:
        nonlocal count
        count += 1
        if count >= 2:
            fired.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run, job)
            await fired.wait()
            assert ticker.scheduler is not None
            [scheduled] = ticker.scheduler.get_jobs()
            assert scheduled.max_instances == 1
            assert scheduled.coalesce is True
            assert scheduled.trigger.interval.total_seconds() == pytest.approx(0.05)
            assert scheduled.trigger.jitter == pytest.approx(0.01)
            tg.cancel_scope.cancel()
    assert ticker.scheduler is None
    assert count >= 2
