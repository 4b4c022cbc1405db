"""The work queue: dedupe, dirty re-runs, per-item backoff, holds, all on a fake clock."""

from __future__ import annotations

import random

import anyio
import pytest

from controller.core.retry import Backoff
from controller.daemon.workqueue import ITEM_BACKOFF, WorkQueue
from controller.testing import FakeClock


def queue(clock: FakeClock, seed: int = 0) -> WorkQueue[str]:
    """A queue on ``clock`` with a seeded rng."""
    return WorkQueue(clock=clock, rng=random.Random(seed))


async def test_items_are_deduplicated_and_fifo(fake_clock: FakeClock) -> None:
    """Adding a queued item again is a no-op; items come out in the order added."""
    q = queue(fake_clock)
    for name in ("a", "b", "a", "c", "b"):
        q.add(name)
    assert len(q) == 3
    assert [await q.get(), await q.get(), await q.get()] == ["a", "b", "c"]
    assert fake_clock.sleeps == []


async def test_an_item_added_while_processing_runs_again_after_done(fake_clock: FakeClock) -> None:
    """An item is never handed out twice at once; an add during processing re-queues it."""
    q = queue(fake_clock)
    q.add("a")
    assert await q.get() == "a"
    q.add("a")
    assert len(q) == 0, "not ready while it is being processed"
    assert q.is_queued("a")
    q.done("a")
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert not q.is_queued("a")


def test_backoff_is_one_second_doubling_to_five_minutes() -> None:
    """The per-item ceiling: 1, 2, 4, ... seconds, capped at 300."""
    assert ITEM_BACKOFF.ceiling(1) == 1.0
    assert ITEM_BACKOFF.ceiling(2) == 2.0
    assert ITEM_BACKOFF.ceiling(9) == 256.0
    assert ITEM_BACKOFF.ceiling(10) == 300.0
    assert ITEM_BACKOFF.ceiling(1000) == 300.0


def test_failure_delays_use_full_jitter_below_the_ceiling(fake_clock: FakeClock) -> None:
    """Each failure waits uniform(0, ceiling): the exact values of the seeded rng."""
    q = queue(fake_clock, seed=42)
    expected_rng = random.Random(42)
    for attempt in range(1, 13):
        delay = q.fail("a")
        ceiling = min(300.0, 2.0 ** (attempt - 1))
        assert delay == pytest.approx(expected_rng.uniform(0, ceiling))
        assert 0 <= delay <= ceiling
        assert q.failures("a") == attempt


def test_at_most_cuts_the_backoff_but_not_a_hint_or_the_count(fake_clock: FakeClock) -> None:
    """``at_most`` (the daemon's interval after an API that did not answer) bounds the backoff
    however many failures; a server's ``at_least`` hint still wins; failures still count."""
    q = queue(fake_clock, seed=7)
    delays = [q.fail("a", at_most=5.0) for _ in range(12)]
    assert max(delays) <= 5.0
    assert max(delays[6:]) > 1.0, "jittered below the cut, not pinned to it"
    assert q.failures("a") == 12
    assert q.fail("a", at_least=30.0, at_most=5.0) == 30.0
    assert q.fail("b") <= 1.0, "without at_most the backoff is the item's own"


def test_success_resets_the_backoff(fake_clock: FakeClock) -> None:
    """forget() after a success: the next failure starts again at 1 s."""
    q = WorkQueue[str](clock=fake_clock, rng=random.Random(0), backoff=Backoff(base=1, cap=300))
    for _ in range(6):
        q.fail("a")
    q.forget("a")
    assert q.failures("a") == 0
    assert q.held_until("a") is None
    assert q.fail("a") <= 1.0


async def test_a_failed_item_comes_back_after_its_delay(fake_clock: FakeClock) -> None:
    """get() waits (virtual time) exactly until the failed item's backoff ends."""
    q = queue(fake_clock, seed=1)
    q.add("a")
    key = await q.get()
    assert key == "a"
    delay = q.fail(key)
    q.done(key)
    start = fake_clock.monotonic()
    assert await q.get() == "a"
    assert fake_clock.monotonic() - start == pytest.approx(delay)


async def test_one_failing_item_never_delays_the_others(fake_clock: FakeClock) -> None:
    """While "bad" backs off for minutes, "good" is handed out at once, every time."""
    q = queue(fake_clock)
    for _ in range(10):
        q.fail("bad")  # backing off, up to 5 minutes
    for _ in range(5):
        before = fake_clock.monotonic()
        q.add("good")
        q.add("bad")  # a plain add (the periodic pass) honours the hold
        assert await q.get() == "good"
        q.done("good")
        assert fake_clock.monotonic() == before
    assert q.held_until("bad") is not None


async def test_requeue_after_is_honoured_by_plain_adds_but_not_forced_ones(
    fake_clock: FakeClock,
) -> None:
    """A lease held until T: plain adds wait for T, a forced add (file changed) runs now."""
    q = queue(fake_clock)
    q.requeue_after("app", 40.0)
    q.add("app")
    assert len(q) == 0
    assert q.held_until("app") == pytest.approx(fake_clock.monotonic() + 40.0)
    assert q.failures("app") == 0, "a requeue is not a failure"
    q.add("app", force=True)
    assert len(q) == 1
    assert q.held_until("app") is None


async def test_held_item_returns_by_itself_at_its_time(fake_clock: FakeClock) -> None:
    """A requeued item comes back at T without anyone adding it again."""
    q = queue(fake_clock)
    q.requeue_after("app", 12.5)
    start = fake_clock.monotonic()
    assert await q.get() == "app"
    assert fake_clock.monotonic() - start == pytest.approx(12.5)


async def test_an_early_delayed_add_does_not_beat_a_hold(fake_clock: FakeClock) -> None:
    """add_after(1 s) on an item held for 30 s still waits the 30 s."""
    q = queue(fake_clock)
    q.requeue_after("app", 30.0)
    q.add_after("app", 1.0)
    start = fake_clock.monotonic()
    assert await q.get() == "app"
    assert fake_clock.monotonic() - start == pytest.approx(30.0)


async def test_discard_forgets_an_item(fake_clock: FakeClock) -> None:
    """A removed app disappears from every part of the queue."""
    q = queue(fake_clock)
    q.add("a")
    q.fail("b")
    q.discard("a")
    q.discard("b")
    assert len(q) == 0
    assert not q.is_queued("b")
    assert q.next_due_in() is None


async def test_shutdown_wakes_waiting_getters(fake_clock: FakeClock) -> None:
    """A worker blocked in get() receives None after shutdown(); later adds are ignored."""
    q = queue(fake_clock)
    got: list[str | None] = []

    async def worker() -> None:
        got.append(await q.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        await anyio.lowlevel.checkpoint()
        q.shutdown()
    assert got == [None]
    q.add("a")
    assert len(q) == 0
    assert q.closed


async def test_a_new_item_wakes_a_waiting_getter(fake_clock: FakeClock) -> None:
    """get() blocked with nothing queued returns as soon as an item is added."""
    q = queue(fake_clock)
    got: list[str | None] = []

    async def worker() -> None:
        got.append(await q.get())

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker)
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        q.add("x")
    assert got == ["x"]
    assert fake_clock.sleeps == []
