"""The planner, scenario by scenario: plain data in, actions out (no emulator, no I/O)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controller.loading.loader import load_dir
from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp, parse_app
from controller.planning.plan import (
    AppPlan,
    Create,
    Destroy,
    DriftKind,
    NoOp,
    Update,
    plan,
    with_launch,
)
from tests.core.planning_support import FakeFly, fly_stored

IMAGE = "registry.fly.io/acme:v1"


def _app(
    web: dict[str, int] | None = None,
    worker: dict[str, int] | None = None,
    *,
    image: str = IMAGE,
    **top: Any,
) -> DesiredApp:
    groups: dict[str, Any] = {}
    if web is not None:
        groups["web"] = {"regions": web, "config": {"env": {"ROLE": "web"}}}
    if worker is not None:
        groups["worker"] = {"regions": worker, "config": {"env": {"ROLE": "worker"}}}
    return parse_app(
        {"app": "acme", "defaults": {"config": {"image": image}}, "groups": groups, **top}
    )


def _converged(app: DesiredApp, fly: FakeFly) -> list[LiveMachine]:
    """The live list after applying the app's plan to an empty account."""
    return fly.apply(plan(app, []), [])


def _kinds(result: AppPlan) -> list[tuple[str, str | None]]:
    return [(a.kind, a.slot) for a in result.actions]


def _by_slot(live: list[LiveMachine], slot: str) -> LiveMachine:
    (found,) = [m for m in live if m.slot == slot]
    return found


def _with_config(machine: LiveMachine, **changes: Any) -> LiveMachine:
    config = {**machine.config, **changes}
    return replace(machine, config=config)


# ------------------------------------------------------------------------------ basics


def test_empty_account_creates_every_slot_in_order() -> None:
    """Groups in file order, regions sorted, slots numbered from 0."""
    result = plan(_app({"iad": 1, "ams": 2}, {"fra": 1}), [])
    assert _kinds(result) == [
        ("create", "web-ams-0"),
        ("create", "web-ams-1"),
        ("create", "web-iad-0"),
        ("create", "worker-fra-0"),
    ]
    first = result.actions[0]
    assert isinstance(first, Create)
    assert (first.group, first.region) == ("web", "ams")


def test_create_carries_identity_but_no_launch_tag() -> None:
    """A create's config has the slot metadata; the launch tag is the executor's to add."""
    (create,) = plan(_app({"ams": 1}), []).creates
    metadata = create.config["metadata"]
    assert metadata["reconciler/managed"] == "true"
    assert metadata["reconciler/group"] == "web"
    assert metadata["reconciler/slot"] == "web-ams-0"
    assert len(metadata["reconciler/spec"]) == 16
    assert "reconciler/launch" not in metadata
    tagged = with_launch(create.config, "uuid-1")
    assert tagged["metadata"]["reconciler/launch"] == "uuid-1"
    assert "reconciler/launch" not in create.config["metadata"]
    assert create.config["image"] == IMAGE


def test_converged_account_is_all_noops() -> None:
    """After a fresh apply, plan is empty (Fly's defaults and fly_ metadata are noise)."""
    app = _app({"ams": 2, "iad": 1}, {"fra": 1})
    live = _converged(app, FakeFly())
    result = plan(app, live)
    assert not result.has_changes
    assert all(isinstance(a, NoOp) for a in result.actions)
    assert {a.reason for a in result.actions} == {
        "in sync (only fields Fly fills or rewrites differ)"
    }
    assert result.managed_count == 4


def test_spec_change_updates_with_diff() -> None:
    """A changed file updates every machine of the group, with the field-level diff."""
    fly = FakeFly()
    live = _converged(_app({"ams": 1}), fly)
    result = plan(_app({"ams": 1}, image="registry.fly.io/acme:v2"), live)
    (update,) = result.actions
    assert isinstance(update, Update)
    assert update.drift == DriftKind.SPEC_CHANGED
    assert update.reason == "desired config changed"
    assert update.current_version == live[0].version
    assert [(c.path, c.before, c.after) for c in update.diff] == [
        ("image", IMAGE, "registry.fly.io/acme:v2")
    ]
    assert update.config["image"] == "registry.fly.io/acme:v2"
    assert not update.skip_launch


def test_update_keeps_launch_tag_and_fly_metadata() -> None:
    """Updates preserve the create's launch tag and Fly-owned metadata, and refresh the spec."""
    fly = FakeFly()
    live = _converged(_app({"ams": 1}), fly)
    (update,) = plan(_app({"ams": 1}, image="x/y:2"), live).updates
    metadata = update.config["metadata"]
    assert metadata["reconciler/launch"] == live[0].launch
    assert metadata["fly_platform_version"] == "v2"
    assert metadata["reconciler/spec"] != live[0].spec


def test_out_of_band_change_is_drift() -> None:
    """Same spec tag, different live config: someone changed the machine outside."""
    fly = FakeFly()
    app = _app({"ams": 1})
    (machine,) = _converged(app, fly)
    edited = _with_config(machine, guest={"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024})
    (update,) = plan(app, [edited]).actions
    assert isinstance(update, Update)
    assert update.drift == DriftKind.OUT_OF_BAND
    assert [(c.path, c.before, c.after) for c in update.diff] == [("guest.memory_mb", 1024, 256)]


def test_spec_change_and_out_of_band_change_together() -> None:
    """A changed file and an edited machine are reported as both."""
    fly = FakeFly()
    (machine,) = _converged(_app({"ams": 1}), fly)
    edited = _with_config(machine, guest={"memory_mb": 1024})
    (update,) = plan(_app({"ams": 1}, image="x/y:2"), [edited]).actions
    assert isinstance(update, Update)
    assert update.drift == DriftKind.SPEC_CHANGED_AND_OUT_OF_BAND


def test_noise_only_is_not_drift() -> None:
    """Differences only in normalised fields (durations, defaults) are a NoOp."""
    fly = FakeFly()
    app = _app({"ams": 1})
    (machine,) = _converged(app, fly)
    noisy = _with_config(
        machine, init={"cmd": []}, dns={}, auto_destroy=False, size="shared-cpu-1x"
    )
    (action,) = plan(app, [noisy]).actions
    assert isinstance(action, NoOp)


def test_stale_spec_tag_is_a_noop_flagged_for_refresh() -> None:
    """A matching config with an outdated spec tag is not restarted; the tag is flagged."""
    fly = FakeFly()
    app = _app({"ams": 1})
    (machine,) = _converged(app, fly)
    metadata = {**machine.metadata, "reconciler/spec": "0000000000000000"}
    (action,) = plan(app, [_with_config(machine, metadata=metadata)]).actions
    assert isinstance(action, NoOp)
    assert action.stale_spec
    assert action.reason.endswith("spec tag outdated")


@pytest.mark.parametrize(
    ("state", "skip"),
    [
        ("started", False),
        ("stopped", True),
        ("suspended", True),
        ("created", True),
        ("failed", False),
    ],
)
def test_skip_launch_follows_the_live_state(state: str, skip: bool) -> None:
    """Stopped, suspended and never-started machines are updated without booting them."""
    fly = FakeFly()
    (machine,) = _converged(_app({"ams": 1}), fly)
    (update,) = plan(_app({"ams": 1}, image="x/y:2"), [replace(machine, state=state)]).updates
    assert update.skip_launch is skip


# ------------------------------------------------------------------------------ scaling


def test_scale_up_adds_the_next_slots() -> None:
    """Scaling a region up creates the next slot numbers and keeps the others."""
    fly = FakeFly()
    live = _converged(_app({"ams": 2}), fly)
    result = plan(_app({"ams": 4}), live)
    assert _kinds(result) == [
        ("noop", "web-ams-0"),
        ("noop", "web-ams-1"),
        ("create", "web-ams-2"),
        ("create", "web-ams-3"),
    ]


def test_lost_slots_are_recreated_first() -> None:
    """A machine that vanished is recreated in its own slot (the lowest free number)."""
    fly = FakeFly()
    live = _converged(_app({"ams": 3}), fly)
    live = [m for m in live if m.slot != "web-ams-1"]
    assert _kinds(plan(_app({"ams": 3}), live)) == [
        ("noop", "web-ams-0"),
        ("create", "web-ams-1"),
        ("noop", "web-ams-2"),
    ]


def test_scale_down_destroys_the_highest_slots() -> None:
    """Scaling down keeps the lowest slots and destroys the highest."""
    fly = FakeFly()
    live = _converged(_app({"ams": 4}), fly)
    result = plan(_app({"ams": 2}), live)
    assert _kinds(result) == [
        ("noop", "web-ams-0"),
        ("noop", "web-ams-1"),
        ("destroy", "web-ams-2"),
        ("destroy", "web-ams-3"),
    ]
    assert result.refused is None
    assert result.destroys[0].reason == "scale down: web wants 2 in ams"


def test_scale_down_with_holes_keeps_existing_machines() -> None:
    """With slots 0, 2, 3 live and 2 wanted, only slot 3 goes (no renumbering, no create)."""
    fly = FakeFly()
    live = [m for m in _converged(_app({"ams": 4}), fly) if m.slot != "web-ams-1"]
    assert _kinds(plan(_app({"ams": 2}), live)) == [
        ("noop", "web-ams-0"),
        ("noop", "web-ams-2"),
        ("destroy", "web-ams-3"),
    ]


def test_region_removed_from_group() -> None:
    """Machines in a region the group no longer lists are destroyed."""
    fly = FakeFly()
    live = _converged(_app({"ams": 1, "iad": 1}), fly)
    assert _kinds(plan(_app({"ams": 1}), live)) == [
        ("noop", "web-ams-0"),
        ("destroy", "web-iad-0"),
    ]


def test_duplicates_keep_the_best_and_destroy_the_rest() -> None:
    """Several machines in one slot: keep started-then-oldest, destroy the others (the
    machine that was there first is the one serving; a duplicate is the accident)."""
    fly = FakeFly()
    app = _app({"ams": 1})
    (original,) = _converged(app, fly)
    config = dict(original.config)
    newer = fly.machine(config, "ams")  # same slot, created later
    stopped_oldest = replace(original, id="0" + original.id, state="stopped")
    assert stopped_oldest.created_at <= original.created_at < newer.created_at
    result = plan(app, [stopped_oldest, newer, original])
    kept, *destroyed = result.actions
    assert isinstance(kept, NoOp)
    assert kept.machine_id == original.id
    assert sorted(d.machine_id for d in destroyed if isinstance(d, Destroy)) == sorted(
        [newer.id, stopped_oldest.id]
    )
    assert all(
        isinstance(d, Destroy) and d.reason == f"duplicate of web-ams-0 (keeping {original.id})"
        for d in destroyed
    )


def test_a_duplicate_without_created_at_is_never_kept_over_a_dated_one() -> None:
    """An unknown ``created_at`` counts as newest, not as oldest."""
    fly = FakeFly()
    app = _app({"ams": 1})
    (original,) = _converged(app, fly)
    undated = replace(fly.machine(dict(original.config), "ams"), created_at="")
    result = plan(app, [undated, original])
    assert [(type(a).__name__, a.machine_id) for a in result.actions] == [
        ("NoOp", original.id),
        ("Destroy", undated.id),
    ]


# ------------------------------------------------------------------------------ ownership


def test_unmanaged_machines_are_listed_never_touched() -> None:
    """Machines without reconciler/managed=true are reported and never in actions."""
    fly = FakeFly()
    app = _app({"ams": 1})
    stranger = fly.machine({"image": "other", "metadata": {"fly_process_group": "app"}}, "ams")
    fake_slot = fly.machine(
        {"image": "x", "metadata": {"reconciler/slot": "web-ams-0", "reconciler/managed": "yes"}},
        "ams",
    )
    result = plan(app, [stranger, fake_slot])
    assert {u.machine_id for u in result.unmanaged} == {stranger.id, fake_slot.id}
    assert _kinds(result) == [("create", "web-ams-0")]
    assert result.managed_count == 0


def test_undeclared_group_is_an_orphan_without_prune() -> None:
    """Machines of a group that left the file are reported, not destroyed, by default."""
    fly = FakeFly()
    live = _converged(_app({"ams": 1}, {"iad": 1}), fly)
    result = plan(_app({"ams": 1}), live)
    assert _kinds(result) == [("noop", "web-ams-0")]
    (orphan,) = result.orphans
    assert (orphan.slot, orphan.group) == ("worker-iad-0", "worker")
    assert orphan.reason == "group worker is no longer declared"


def test_undeclared_group_is_destroyed_with_prune() -> None:
    """With prune on (file or override) orphaned machines are destroyed."""
    fly = FakeFly()
    live = _converged(_app({"ams": 1}, {"iad": 1}), fly)
    pruned = plan(_app({"ams": 1}, prune=True), live)
    assert _kinds(pruned) == [("noop", "web-ams-0"), ("destroy", "worker-iad-0")]
    assert pruned.orphans == ()
    assert _kinds(plan(_app({"ams": 1}), live, prune=True)) == _kinds(pruned)
    assert plan(_app({"ams": 1}, prune=True), live, prune=False).destroys == ()


@pytest.mark.parametrize(
    "metadata",
    [
        {"reconciler/managed": "true"},
        {"reconciler/managed": "true", "reconciler/slot": "web-ams-x", "reconciler/group": "web"},
        {"reconciler/managed": "true", "reconciler/slot": "web-iad-0", "reconciler/group": "web"},
        {"reconciler/managed": "true", "reconciler/slot": "web-ams-0", "reconciler/group": "api"},
        {"reconciler/managed": "true", "reconciler/slot": "web-ams-01", "reconciler/group": "web"},
    ],
)
def test_inconsistent_identity_is_an_orphan(metadata: dict[str, str]) -> None:
    """Managed machines with missing, malformed or contradictory slot metadata are orphans."""
    fly = FakeFly()
    machine = fly.machine({"image": IMAGE, "metadata": metadata}, "ams")
    result = plan(_app({"ams": 1}), [machine])
    assert _kinds(result) == [("create", "web-ams-0")]
    assert [o.machine_id for o in result.orphans] == [machine.id]
    assert result.managed_count == 1


def test_gone_machines_are_ignored() -> None:
    """Destroying/destroyed machines neither count nor block their slot."""
    fly = FakeFly()
    app = _app({"ams": 1})
    (machine,) = _converged(app, fly)
    result = plan(app, [replace(machine, state="destroying")])
    assert _kinds(result) == [("create", "web-ams-0")]
    assert result.managed_count == 0


def test_group_names_with_dashes() -> None:
    """Slots are parsed from the right, so group names may contain dashes."""
    app = parse_app(
        {"app": "a", "groups": {"web-api": {"regions": {"ams": 1}, "config": {"image": "x:1"}}}}
    )
    fly = FakeFly()
    live = fly.apply(plan(app, []), [])
    assert live[0].slot == "web-api-ams-0"
    assert not plan(app, live).has_changes


# ------------------------------------------------------------------------------ safety


@pytest.mark.parametrize(
    ("have", "want", "refused"),
    [
        (4, 2, False),  # exactly half: allowed
        (4, 1, True),  # three quarters: over budget
        (3, 1, True),
        (10, 5, False),
        (10, 4, True),
        (1, 0, True),  # would leave none
    ],
)
def test_destroy_budget(have: int, want: int, refused: bool) -> None:
    """Destroying more than max_destroy (default 50%) of managed machines is refused."""
    fly = FakeFly()
    live = _converged(_app({"ams": have}), fly)
    result = plan(_app({"ams": want}), live)
    assert (result.refused is not None) is refused
    assert result.has_changes  # the actions stay visible for the operator


def test_max_destroy_from_the_file() -> None:
    """max_destroy in the file raises (or lowers) the budget."""
    fly = FakeFly()
    live = _converged(_app({"ams": 4}), fly)
    assert plan(_app({"ams": 1}, max_destroy=0.75), live).refused is None
    assert plan(_app({"ams": 3}, max_destroy=0.0), live).refused is not None


def test_leaving_zero_machines_needs_allow_empty() -> None:
    """A plan leaving the app without managed machines needs allow_empty."""
    fly = FakeFly()
    live = _converged(_app({"ams": 2}), fly)
    refused = plan(_app({"ams": 0}, max_destroy=1.0), live)
    assert refused.refused is not None
    assert "allow-empty" in refused.refused.reason
    allowed = plan(_app({"ams": 0}), live, allow_empty=True)
    assert allowed.refused is None
    assert len(allowed.destroys) == 2


def test_refusal_counts_orphans_and_duplicates() -> None:
    """Pruned orphans count against the budget like any destroy."""
    fly = FakeFly()
    live = _converged(_app({"ams": 1}, {"iad": 3}), fly)
    result = plan(_app({"ams": 1}, prune=True), live)
    assert len(result.destroys) == 3
    assert result.refused is not None
    assert "3 of 4" in result.refused.reason


def test_suspicious_empty_list_needs_relist() -> None:
    """An empty list when the last pass saw machines: re-list before creating."""
    app = _app({"ams": 3})
    assert plan(app, [], previous_managed_count=3).needs_relist
    assert not plan(app, []).needs_relist
    assert not plan(app, [], previous_managed_count=0).needs_relist


def test_sharp_shrink_needs_relist() -> None:
    """A list under half of last pass's size plus creates triggers the relist guard."""
    fly = FakeFly()
    live = _converged(_app({"ams": 10}), fly)
    assert plan(_app({"ams": 10}), live[:4], previous_managed_count=10).needs_relist
    assert not plan(_app({"ams": 10}), live[:6], previous_managed_count=10).needs_relist
    assert not plan(_app({"ams": 4}), live[:4], previous_managed_count=10).needs_relist
    relaxed = plan(_app({"ams": 10}), live[:4], previous_managed_count=10, relist_threshold=6)
    assert not relaxed.needs_relist


# ------------------------------------------------------------------------------ detect_only


def test_detect_only_reports_instead_of_acting() -> None:
    """detect_only apps get drift reports and only NoOp actions."""
    fly = FakeFly()
    live = _converged(_app({"ams": 2, "iad": 1}), fly)
    edited = [
        _with_config(m, guest={"memory_mb": 1024}) if m.slot == "web-ams-0" else m for m in live
    ]
    result = plan(_app({"ams": 1, "fra": 1}, detect_only=True), edited)
    assert not result.has_changes
    assert result.refused is None
    assert [(d.kind, d.slot) for d in result.drift] == [
        (DriftKind.OUT_OF_BAND, "web-ams-0"),
        (DriftKind.EXTRA, "web-ams-1"),
        (DriftKind.MISSING, "web-fra-0"),
        (DriftKind.EXTRA, "web-iad-0"),
    ]
    assert result.drift[0].diff[0].path == "guest.memory_mb"


# ------------------------------------------------------------------------------ determinism, speed


def test_plan_ignores_the_order_of_the_live_list() -> None:
    """The same machines in any order give the identical plan."""
    fly = FakeFly()
    live = _converged(_app({"ams": 3, "iad": 2}, {"fra": 2}), fly)
    live += [fly.machine({"image": "x"}, "ams"), fly.machine(dict(live[0].config), "ams")]
    app = _app({"ams": 2, "iad": 3}, image="x/y:3")
    expected = plan(app, live)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = live[:]
        rng.shuffle(shuffled)
        assert plan(app, shuffled) == expected


def test_live_configs_are_not_mutated() -> None:
    """Planning never changes the live machines it was given."""
    fly = FakeFly()
    live = _converged(_app({"ams": 2}), fly)
    snapshot = [dict(m.config) for m in live]
    plan(_app({"ams": 1}, image="x/y:2"), live)
    assert [dict(m.config) for m in live] == snapshot


def test_passthrough_changes_are_planned() -> None:
    """A changed x_passthrough value is an update like any other field."""
    doc: dict[str, Any] = {
        "app": "a",
        "groups": {
            "g": {
                "regions": {"ams": 1},
                "config": {"image": "x:1", "x_passthrough": {"containers": [{"name": "a"}]}},
            }
        },
    }
    fly = FakeFly()
    live = fly.apply(plan(parse_app(doc), []), [])
    assert live[0].config["containers"] == [{"name": "a"}]
    assert not plan(parse_app(doc), live).has_changes
    doc["groups"]["g"]["config"]["x_passthrough"] = {"containers": [{"name": "b"}]}
    (update,) = plan(parse_app(doc), live).updates
    assert [c.path for c in update.diff] == ["containers[0].name"]


def test_fly_model_really_adds_noise() -> None:
    """Sanity check of the test double: Fly's stored config differs from what was sent."""
    sent: dict[str, Any] = {"image": IMAGE, "checks": {"h": {"interval": "60s"}}}
    stored = fly_stored(sent)
    assert stored != sent
    assert stored["checks"]["h"]["interval"] == "1m0s"
    assert stored["metadata"]["fly_platform_version"] == "v2"


def test_repository_example_converges() -> None:
    """The shipped desired_state/ plans creates, and nothing once Fly has applied them."""
    result = load_dir(Path(__file__).resolve().parents[2] / "desired_state", environ={})
    fly = FakeFly()
    for app in result.apps.values():
        first = plan(app, [])
        assert first.creates
        assert first.refused is None
        assert not plan(app, fly.apply(first, [])).has_changes
