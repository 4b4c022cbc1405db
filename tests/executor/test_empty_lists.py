"""Empty machine lists in a row never make duplicates (DESIGN.md 3, issue 14).

Fly has answered ``GET /machines`` with ``200 []`` for apps that had machines (FLY_API.md 1.1).
The emulator's fault rules give that answer ``count`` times in a row.  ``apply`` has no memory
(``previous_managed_count`` None); the daemon passes the last pass's count, which arms the
re-list guard first.  Either way a plan made from a list with no managed machine is staged:
one create, then a listing that must show it.  Every test checks the end state: one machine per
slot, the machines that were there first untouched, no lease left.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from typing import Any

import pytest

from controller.cli.apply import Reporter, apply_apps, exit_code
from controller.emulator import Behaviour
from controller.execution.executor import ExecutorSettings
from controller.execution.outcomes import AppResult, Event, MachineResult, Outcome, Progress
from controller.execution.reconciler import list_live, reconcile_app
from controller.flyapi import RateLimits
from controller.model.actual import MANAGED_KEY
from controller.planning.plan import plan
from tests.executor.support import CRASHLOOP, World, desired, fast_behaviour, world
from tests.executor.test_loopback import served

LIST = r"/machines$"
EMPTY = {"method": "GET", "path": LIST, "status": 200, "body": []}
#: Lists of a confirming round: all machines, then ``reconciler/managed=true``.
ROUND = 2


def empty_lists(w: World, count: int) -> None:
    """The next ``count`` machine lists answer ``200 []`` (metadata-filtered ones included)."""
    w.emulator.add_fault({**EMPTY, "count": count})


async def fleet(w: World) -> dict[str, str]:
    """Converge the default app (ams 2, iad 1); its machine id per slot."""
    assert (await w.reconcile(desired())).converged
    return {slot: ms[0]["id"] for slot, ms in w.by_slot().items()}


def assert_untouched(w: World, before: dict[str, str], mark: int) -> None:
    """One machine per slot, the same ones as before, none of them written to; no lease left."""
    assert {slot: [m["id"] for m in ms] for slot, ms in w.by_slot().items()} == {
        slot: [machine] for slot, machine in before.items()
    }
    for machine in before.values():
        assert not w.requests(path=machine, since=mark), machine
    assert w.live_leases() == []


def lists(w: World, since: int) -> list[dict[str, Any]]:
    return w.requests("GET", LIST, since=since)


def outcomes(result: AppResult) -> list[tuple[str, str | None, Outcome]]:
    return [(r.action, r.slot, r.outcome) for r in result.results]


async def apply_once(w: World) -> tuple[AppResult, int]:
    """``apply --yes`` as the CLI runs it (no memory of an earlier pass): result, exit code."""
    reporter = Reporter(io.StringIO(), force_plain=True, clock=w.clock)
    report = await apply_apps(
        (desired(),), executor=w.executor, reporter=reporter, confirm=lambda _p: True
    )
    [result] = report.results
    return result, exit_code(report.results)


# ------------------------------------------------------------------------------ apply


@pytest.mark.parametrize(
    ("count", "listings"),
    [(1, 1 + ROUND), (2, 1 + ROUND), (3, 1 + 2 * ROUND)],
    ids=["empty-once", "empty-twice", "empty-three-times"],
)
async def test_apply_after_empty_lists_creates_one_machine_and_destroys_it(
    count: int, listings: int
) -> None:
    """apply: the empty list plans 3 creates; the first is made, the next listing shows the
    fleet, so that machine (a duplicate of web-ams-0) is destroyed and nothing else is sent."""
    async with world() as w:
        before = await fleet(w)
        empty_lists(w, count)
        mark = w.mark()
        result, code = await apply_once(w)
        assert outcomes(result) == [
            ("create", "web-ams-0", Outcome.OK),
            ("create", "web-ams-1", Outcome.LIST_INCONSISTENT),
            ("create", "web-iad-0", Outcome.LIST_INCONSISTENT),
            ("destroy", "web-ams-0", Outcome.OK),
        ]
        canary = result.results[0].machine_id
        assert result.results[-1].machine_id == canary
        assert f"{before['web-ams-1']} holds web-ams-1" in result.results[1].message
        assert code == 3  # partial: blocked by the API, not failed, not converged
        assert len(w.requests("POST", LIST, since=mark)) == 1
        assert len(lists(w, mark)) == listings
        assert lists(w, mark)[-1]["query"] == {f"metadata.{MANAGED_KEY}": ["true"]}
        assert_untouched(w, before, mark)
        again = await w.reconcile(desired())
        assert again.converged
        assert {r.outcome for r in again.results} == {Outcome.NOOP}


async def test_apply_when_the_list_never_shows_the_new_machine_stops_and_removes_it() -> None:
    """Seven empty lists in a row (the plan's, then three confirming rounds): the list cannot
    be trusted.  Nothing more is created, the one machine made is destroyed, exit 3."""
    async with world() as w:
        before = await fleet(w)
        empty_lists(w, 1 + 3 * ROUND)
        mark = w.mark()
        began = w.clock.monotonic()
        result, code = await apply_once(w)
        canary = result.results[0].machine_id
        assert outcomes(result) == [
            ("create", "web-ams-0", Outcome.OK),
            ("create", "web-ams-1", Outcome.LIST_INCONSISTENT),
            ("create", "web-iad-0", Outcome.LIST_INCONSISTENT),
            ("destroy", "web-ams-0", Outcome.OK),
        ]
        assert result.results[1].message == (
            f"not created: machine list inconsistent: created {canary} for web-ams-0, not listed"
        )
        assert code == 3
        assert len(lists(w, mark)) == 1 + 3 * ROUND
        confirming = [e["at"] for e in lists(w, mark)[1::ROUND]]
        assert [b - a for a, b in itertools.pairwise(confirming)] == [1.0, 2.0]
        assert len(w.requests("POST", LIST, since=mark)) == 1
        assert_untouched(w, before, mark)
        assert w.clock.monotonic() - began < 20  # the canary's boot and checks, then its destroy


async def test_apply_over_real_loopback_http_after_three_empty_lists() -> None:
    """The same over real sockets on the real clock: no duplicate, the fleet untouched."""
    async with served() as s:
        app = desired(groups={"web": {"regions": {"ams": 2, "iad": 1}}})
        assert (await reconcile_app(app, executor=s.executor)).converged
        before = sorted(m["id"] for m in s.emulator.machines("web"))
        s.emulator.add_fault({**EMPTY, "count": 3})
        out = io.StringIO()
        report = await apply_apps(
            (app,),
            executor=s.executor,
            reporter=Reporter(out, force_plain=True),
            confirm=lambda _p: True,
        )
        assert exit_code(report.results) == 3
        assert sorted(m["id"] for m in s.emulator.machines("web")) == before
        posts = [
            e
            for e in s.emulator.requests()
            if e["method"] == "POST" and e["path"].endswith("/machines")
        ]
        assert len(posts) == 4  # the first apply's three creates, then the canary
        assert all(m["lease"] is None for m in s.emulator.dump()["machines"])


# ------------------------------------------------------------------------------ the daemon


@pytest.mark.parametrize(
    ("count", "posts"),
    [(1, 0), (2, 0), (3, 1)],
    ids=["empty-once", "empty-twice", "empty-three-times"],
)
async def test_daemon_pass_after_empty_lists_never_duplicates(count: int, posts: int) -> None:
    """The daemon knows 3 machines: an empty list is re-listed (all + managed) first.  Once or
    twice empty: the re-list shows them, nothing is created.  Three times (the re-list empty
    too): the plan is staged, the one machine made is a duplicate and is destroyed."""
    async with world() as w:
        before = await fleet(w)
        empty_lists(w, count)
        mark = w.mark()
        result = await w.reconcile(desired(), previous_managed_count=3)
        assert result.relisted
        assert len(w.requests("POST", LIST, since=mark)) == posts
        if posts:
            assert [r.outcome for r in result.results] == [
                Outcome.OK,
                Outcome.LIST_INCONSISTENT,
                Outcome.LIST_INCONSISTENT,
                Outcome.OK,
            ]
            assert result.severity.exit_code == 3
        else:
            assert result.converged
            assert {r.outcome for r in result.results} == {Outcome.NOOP}
        assert_untouched(w, before, mark)


async def test_daemon_passes_under_a_list_that_stays_empty_hold_one_extra_machine_at_most() -> None:
    """A list empty for many passes: each pass makes one machine, sees it missing from every
    listing, and destroys it.  The fleet is never more than one machine over, and exactly as it
    was after every pass; the daemon's count goes to 0 and back, never to duplicates."""
    async with world() as w:
        before = await fleet(w)
        empty_lists(w, 1000)
        previous: int | None = 3
        for _ in range(3):
            mark = w.mark()
            result = await w.reconcile(desired(), previous_managed_count=previous)
            assert [(r.action, r.outcome) for r in result.results] == [
                ("create", Outcome.OK),
                ("create", Outcome.LIST_INCONSISTENT),
                ("create", Outcome.LIST_INCONSISTENT),
                ("destroy", Outcome.OK),
            ]
            assert len(w.requests("POST", LIST, since=mark)) == 1
            assert_untouched(w, before, mark)
            assert result.plan is not None
            previous = result.plan.managed_count
        w.emulator.faults.clear()
        assert (await w.reconcile(desired(), previous_managed_count=previous)).converged


# ------------------------------------------------------------------------------ new apps


def production_like() -> tuple[Behaviour, RateLimits]:
    """Fly's timings with a 100 ms answer, its rate limits, and the client's default pacing."""
    return (
        Behaviour(request_latency_seconds=0.1, boot_seconds=2.0, checks_pass_seconds=3.0),
        RateLimits(),
    )


async def _new_app(*, staged: bool, regions: dict[str, int]) -> tuple[float, int, int]:
    """Create a new app's machines; (virtual seconds, requests, list calls)."""
    behaviour, limits = production_like()
    async with world(behaviour=behaviour, limits=limits) as w:
        app = desired(groups={"web": {"regions": regions}})
        began = w.clock.monotonic()
        if staged:
            result = await w.reconcile(app)
        else:  # what a pass did before staging: the plan applied as it is
            result = await w.executor.execute(plan(app, await list_live(w.client, "web")), app)
        assert result.converged, [r.describe() for r in result.results]
        assert sum(len(ms) for ms in w.by_slot().values()) == sum(regions.values())
        assert all(len(ms) == 1 for ms in w.by_slot().values())
        took = w.clock.monotonic() - began
        return took, len(w.emulator.requests()), len(w.requests("GET", LIST))


@pytest.mark.parametrize("regions", [{"ams": 3, "iad": 3}, {"ams": 1}], ids=["6", "1"])
async def test_a_new_app_converges_at_the_cost_of_one_listing(regions: dict[str, int]) -> None:
    """A genuinely new app is staged too (its list shows no managed machine): it converges,
    for two list calls more, and within a second of the unstaged time (one listing's wait)."""
    staged_time, staged_calls, staged_lists = await _new_app(staged=True, regions=regions)
    plain_time, plain_calls, plain_lists = await _new_app(staged=False, regions=regions)
    print(
        f"\nnew app of {sum(regions.values())}: staged {staged_time:.2f}s {staged_calls} calls, "
        f"unstaged {plain_time:.2f}s {plain_calls} calls"
    )
    assert (staged_lists, plain_lists) == (1 + ROUND, 1)
    assert staged_calls - plain_calls == ROUND
    assert staged_time - plain_time <= 1.0


async def test_a_new_app_whose_first_region_has_no_capacity_still_creates_the_others() -> None:
    """The first create ends without a machine (no capacity in ams): the next region's create
    is the one confirmed; ams's other slot is not attempted (the region has no room)."""
    async with world(behaviour=fast_behaviour(region_capacity_mb={"ams": 0})) as w:
        result = await w.reconcile(desired(groups={"web": {"regions": {"ams": 2, "iad": 2}}}))
        assert [(r.slot, r.outcome, r.attempts) for r in result.results] == [
            ("web-ams-0", Outcome.CAPACITY, 1),
            ("web-ams-1", Outcome.CAPACITY, 0),
            ("web-iad-0", Outcome.OK, 1),
            ("web-iad-1", Outcome.OK, 1),
        ]
        assert sorted(w.by_slot()) == ["web-iad-0", "web-iad-1"]
        assert len(w.requests("POST", LIST)) == 3
        assert len(w.requests("GET", LIST)) == 1 + ROUND


async def test_a_new_app_with_volumes_gives_every_machine_its_own() -> None:
    """The staged parts share one volume picker: the canary's volume is never handed out twice."""
    mounts = [{"path": "/data", "volume": {"name": "data", "size_gb": 1}}]
    async with world() as w:
        result = await w.reconcile(
            desired(groups={"db": {"regions": {"ams": 3}, "mounts": mounts}})
        )
        assert result.converged, [r.describe() for r in result.results]
        volumes = [m["config"]["mounts"][0]["volume"] for m in w.machines()]
        assert len(set(volumes)) == 3


async def test_confirming_listing_that_fails_creates_nothing_more() -> None:
    """The listing after the first create fails past the client's retries: the other creates
    are not sent (error, naming the failure); the machine made stays for the next pass."""
    armed: list[bool] = []

    def on_event(event: Event) -> None:
        if isinstance(event, Progress) and event.machine_id and not armed:
            armed.append(True)
            w.emulator.add_fault({"method": "GET", "path": LIST, "status": 502, "count": 20})

    settings = ExecutorSettings(create_relist_delay=0.2)
    async with world(on_event=on_event, settings=settings) as w:
        result = await w.reconcile(desired())
        first, *others = result.results
        assert first.outcome is Outcome.OK
        assert [(r.outcome, r.error_class) for r in others] == [(Outcome.ERROR, "server_error")] * 2
        assert all("listing the machines again" in r.message for r in others)
        assert len(w.requests("POST", LIST)) == 1
        assert sorted(w.by_slot()) == ["web-ams-0"]
        w.emulator.faults.clear()
        assert (await w.reconcile(desired())).converged
        assert all(len(ms) == 1 for ms in w.by_slot().values())


def _final(events: Sequence[Event]) -> list[MachineResult]:
    return [e for e in events if isinstance(e, MachineResult)]


async def test_every_staged_result_is_emitted_once() -> None:
    """apply prints and the daemon logs what ``on_event`` receives: each result exactly once,
    the ones of creates never sent included."""
    async with world() as w:
        await fleet(w)
        empty_lists(w, 1)
        w.events.clear()
        result = await w.reconcile(desired())
        assert _final(w.events)
        assert sorted(map(repr, _final(w.events))) == sorted(map(repr, result.results))


# ------------------------------------------------------------------------------ lost creates


@pytest.mark.parametrize(
    ("count", "outcome"),
    [(1, Outcome.OK), (2, Outcome.LIST_INCONSISTENT)],
    ids=["tag-list-empty", "both-lists-empty"],
)
async def test_a_lost_create_is_never_sent_again_on_the_word_of_an_empty_list(
    count: int, outcome: Outcome
) -> None:
    """A create whose answer was lost (the machine was made) is looked for by its launch tag,
    then among the managed machines.  An empty tag listing alone: the managed one finds it.
    Both empty: they leave out the 3 machines known to exist, so the create is not sent again
    (it would be a duplicate) and ends list_inconsistent; the next pass sees the machine."""
    armed: list[bool] = []

    def on_event(event: Event) -> None:  # once the create is sent: empty lists
        if isinstance(event, Progress) and event.phase == "writing" and armed == [False]:
            armed[0] = True
            w.emulator.add_fault({**EMPTY, "count": count})

    async with world(on_event=on_event) as w:
        before = await fleet(w)
        armed.append(False)
        w.emulator.add_fault({"method": "POST", "path": LIST, "drop": "after"})
        result = await w.reconcile(desired(groups={"web": {"regions": {"ams": 3, "iad": 1}}}))
        [create] = [r for r in result.results if r.action == "create"]
        assert (create.slot, create.outcome, create.attempts) == ("web-ams-2", outcome, 1)
        assert len(w.requests("POST", LIST)) == 3 + 1
        assert all(len(ms) == 1 for ms in w.by_slot().values())
        assert sorted(w.by_slot()) == ["web-ams-0", "web-ams-1", "web-ams-2", "web-iad-0"]
        if outcome is Outcome.LIST_INCONSISTENT:
            assert "not sent again: machine list inconsistent" in create.message
            assert create.machine_id is None
        again = await w.reconcile(desired(groups={"web": {"regions": {"ams": 3, "iad": 1}}}))
        assert again.converged
        assert {r.outcome for r in again.results} == {Outcome.NOOP}
        assert {s: ms[0]["id"] for s, ms in w.by_slot().items() if s in before} == before
        assert w.live_leases() == [] or outcome is Outcome.LIST_INCONSISTENT


async def test_an_unhealthy_duplicate_is_still_destroyed() -> None:
    """The machine made first crashes on the new image (its group halts), and the listing
    shows it duplicates web-ams-0: it is destroyed all the same, the fleet left as it was."""
    async with world() as w:
        before = await fleet(w)
        empty_lists(w, 1)
        mark = w.mark()
        result = await w.reconcile(desired(image=CRASHLOOP))
        assert [(r.action, r.outcome) for r in result.results] == [
            ("create", Outcome.UNHEALTHY),
            ("create", Outcome.LIST_INCONSISTENT),
            ("create", Outcome.LIST_INCONSISTENT),
            ("destroy", Outcome.OK),
        ]
        assert_untouched(w, before, mark)
