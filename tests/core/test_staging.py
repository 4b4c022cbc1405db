"""Staged creates, the pure half: which plans are staged and how a confirming listing is read."""

from __future__ import annotations

from dataclasses import replace

from controller.model.actual import SLOT_KEY, LiveMachine
from controller.planning.plan import Create, plan
from controller.planning.render import render
from controller.planning.staging import Taken, confirm, staged
from tests.core.planning_support import FakeFly
from tests.core.test_plan import _app


def _made(fly: FakeFly, create: Create, machine_id: str | None = None) -> LiveMachine:
    return fly.machine(create.config, create.region, machine_id=machine_id)


def test_only_creates_from_a_list_without_managed_machines_are_staged() -> None:
    """A list with no managed machine is staged; a list with one, a missing app (404: the app
    is created first), a refused plan and a plan with nothing to create are not."""
    app = _app({"ams": 2})
    first = plan(app, [])
    assert staged(first)
    fly = FakeFly()
    one = _made(fly, first.creates[0])
    assert not staged(plan(app, [one]))
    assert not staged(plan(_app({"ams": 2}, org="personal"), [], app_missing=True))
    assert not staged(plan(_app({"ams": 200}), []))  # over max_create: refused
    assert not staged(plan(_app({"ams": 0}), []))
    assert not staged(plan(app, [], previous_managed_count=2))  # re-list first


def test_a_listing_without_the_canary_confirms_nothing() -> None:
    app = _app({"ams": 2, "iad": 1})
    first = plan(app, [])
    fly = FakeFly()
    canary = first.creates[0]
    others = [_made(fly, c) for c in first.creates]
    seen = confirm(first, canary, "c0ffee00000000", others)
    assert not seen.listed
    assert (seen.rest, seen.taken, seen.duplicate) == ((), (), None)
    gone = replace(_made(fly, canary, "c0ffee00000000"), state="destroyed")
    assert not confirm(first, canary, gone.id, [gone]).listed


def test_a_new_app_goes_on_with_every_other_create() -> None:
    app = _app({"ams": 2, "iad": 1})
    first = plan(app, [])
    fly = FakeFly()
    canary = first.creates[0]
    made = _made(fly, canary)
    seen = confirm(first, canary, made.id, [made])
    assert seen.listed
    assert [c.slot for c in seen.rest] == ["web-ams-1", "web-iad-0"]
    assert (seen.taken, seen.duplicate, seen.managed) == ((), None, 1)
    settled = confirm(first, canary, made.id, [made], settled={"web-ams-1"})
    assert [c.slot for c in settled.rest] == ["web-iad-0"]


def test_machines_the_first_list_missed_hold_their_slots_and_the_canary_goes() -> None:
    """The listing shows the fleet: the canary duplicates web-ams-0 and is the one destroyed
    (never the machine that was there first), the other slots are taken."""
    app = _app({"ams": 2, "iad": 1})
    first = plan(app, [])
    fly = FakeFly()
    fleet = [_made(fly, c) for c in first.creates]
    canary = first.creates[0]
    made = _made(fly, canary)
    seen = confirm(first, canary, made.id, [*fleet, made])
    assert seen.listed
    assert seen.rest == ()
    assert seen.taken == (
        Taken(first.creates[1], fleet[1].id),
        Taken(first.creates[2], fleet[2].id),
    )
    assert seen.duplicate is not None
    assert (seen.duplicate.machine_id, seen.duplicate.slot) == (made.id, "web-ams-0")
    assert f"keeping {fleet[0].id}" in seen.duplicate.reason
    assert seen.managed == 4


def test_machines_without_a_consistent_slot_hold_none() -> None:
    """As in the planner: a managed machine whose slot metadata names another region is an
    orphan, it holds no slot; unmanaged and destroyed machines hold none either."""
    app = _app({"ams": 2})
    first = plan(app, [])
    fly = FakeFly()
    canary, second = first.creates
    made = _made(fly, canary)
    stray = _made(fly, second)
    metadata = {**stray.config["metadata"], SLOT_KEY: "web-iad-1"}
    stray = replace(stray, config={**stray.config, "metadata": metadata})
    unmanaged = fly.machine({"image": "registry.fly.io/other:v1"}, "ams")
    destroyed = replace(_made(fly, second), state="destroyed")
    seen = confirm(first, canary, made.id, [made, stray, unmanaged, destroyed])
    assert [c.slot for c in seen.rest] == ["web-ams-1"]
    assert seen.taken == ()
    assert seen.duplicate is None


def test_the_text_plan_says_when_creates_are_staged() -> None:
    """A reviewer sees that the creates go one first: only for a staged plan with more than
    one create (a single create has nothing to wait for)."""
    note = "one machine is created first, the others once a new listing shows it"
    assert note in render(plan(_app({"ams": 2, "iad": 1}), []))
    assert note not in render(plan(_app({"ams": 1}), []))
    fly = FakeFly()
    first = plan(_app({"ams": 3}), [])
    assert note not in render(plan(_app({"ams": 3}), [_made(fly, first.creates[0])]))
