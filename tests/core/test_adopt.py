"""The adoption matcher (pure): which unmanaged machine fills which free slot, deterministically."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from controller.model.actual import IDENTITY_KEYS, LiveMachine
from controller.model.desired import DesiredApp, parse_app
from controller.planning.adopt import (
    SAME_CONFIG,
    SAME_IMAGE,
    SAME_REPOSITORY,
    adopted_config,
    match,
    render,
)
from controller.planning.plan import NoOp, Update, plan
from tests.core.planning_support import FakeFly

IMAGE = "registry.fly.io/acme:v1"


def _app(**regions: int) -> DesiredApp:
    return parse_app(
        {
            "app": "acme",
            "defaults": {"config": {"image": IMAGE, "env": {"TOKEN": "hunter2"}}},
            "groups": {"web": {"regions": regions or {"ams": 2}}},
        }
    )


def _unmanaged(machine: LiveMachine, **config: Any) -> LiveMachine:
    """``machine`` as fly deploy would have made it: no reconciler metadata."""
    metadata = {k: v for k, v in machine.metadata.items() if k not in IDENTITY_KEYS}
    return replace(machine, config={**machine.config, **config, "metadata": metadata})


def test_an_identical_unmanaged_machine_fills_the_free_slot_and_then_plans_a_noop() -> None:
    fly = FakeFly()
    app = _app(ams=2)
    live = fly.apply(plan(app, []), [])
    lost = next(m for m in live if m.slot == "web-ams-1")
    stray = _unmanaged(lost)
    live = [m for m in live if m is not lost] + [stray]
    proposal = match(app, live)
    [adoption] = proposal.adoptions
    assert (adoption.machine_id, adoption.slot, adoption.match) == (
        stray.id,
        "web-ams-1",
        SAME_CONFIG,
    )
    assert adoption.diff == ()
    adopted = replace(stray, config=adopted_config(stray, adoption))
    after = plan(app, [m for m in live if m is not stray] + [adopted])
    assert all(isinstance(a, NoOp) for a in after.actions)
    assert after.unmanaged == ()
    assert after.actions[1].reason.startswith("in sync")


def test_other_tags_are_adopted_with_the_change_the_next_apply_makes() -> None:
    fly = FakeFly()
    app = _app(ams=1)
    made = fly.apply(plan(app, []), [])[0]
    old = _unmanaged(made, image="registry.fly.io/acme:v0")
    proposal = match(app, [old])
    [adoption] = proposal.adoptions
    assert adoption.match == SAME_REPOSITORY
    assert [c.path for c in adoption.diff] == ["image"]
    after = plan(app, [replace(old, config=adopted_config(old, adoption))])
    [update] = after.actions
    assert isinstance(update, Update)
    assert update.reason == "desired config changed"
    text = render(proposal)
    assert "registry.fly.io/acme:v0" in text
    assert "hunter2" not in text


def test_region_and_foreign_images_are_never_matched() -> None:
    fly = FakeFly()
    app = _app(ams=1)
    made = fly.apply(plan(app, []), [])[0]
    elsewhere = _unmanaged(replace(made, id="m-iad", region="iad"))
    database = _unmanaged(replace(made, id="m-db"), image="flyio/postgres-flex:16")
    proposal = match(app, [elsewhere, database])
    assert proposal.adoptions == ()
    assert proposal.unmatched == ("m-db", "m-iad")
    assert "nothing to adopt" in render(proposal)


def test_best_match_wins_and_the_result_does_not_depend_on_list_order() -> None:
    fly = FakeFly()
    app = _app(ams=2)
    made = fly.apply(plan(app, []), [])
    exact = _unmanaged(replace(made[0], id="m-z-exact"))
    retagged = _unmanaged(replace(made[1], id="m-a-old"), image="registry.fly.io/acme:v0")
    drifted = _unmanaged(replace(made[1], id="m-b-env"), env={"TOKEN": "other"})
    machines = [exact, retagged, drifted]
    first = match(app, machines)
    for seed in range(5):
        shuffled = machines[:]
        random.Random(seed).shuffle(shuffled)
        assert match(app, shuffled) == first
    assert [(a.machine_id, a.slot, a.match) for a in first.adoptions] == [
        ("m-z-exact", "web-ams-0", SAME_CONFIG),
        ("m-b-env", "web-ams-1", SAME_IMAGE),
    ]
    assert first.unmatched == ("m-a-old",)


def test_managed_machines_are_never_proposed() -> None:
    fly = FakeFly()
    app = _app(ams=1)
    live = fly.apply(plan(app, []), [])
    assert match(app, live).adoptions == ()
    assert match(app, live).free_slots == 0
