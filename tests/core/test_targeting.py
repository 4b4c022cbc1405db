"""``--group`` targeting and pausing in the planner (pure): what is planned, what is left alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.loading.pausing import marker_reason, paused_by_marker
from controller.model.desired import DesiredApp, parse_app
from controller.planning.plan import Destroy, plan
from controller.planning.render import render, to_document
from controller.planning.targeting import narrow_groups, pause, unknown_groups
from tests.core.planning_support import FakeFly

IMAGE = "registry.fly.io/acme:v1"


def _app(web: dict[str, int], worker: dict[str, int] | None = None, **top: Any) -> DesiredApp:
    groups: dict[str, Any] = {"web": {"regions": web, "config": {"env": {"ROLE": "web"}}}}
    if worker is not None:
        groups["worker"] = {"regions": worker, "config": {"env": {"ROLE": "worker"}}}
    return parse_app(
        {"app": "acme", "defaults": {"config": {"image": IMAGE}}, "groups": groups, **top}
    )


def test_group_targeting_plans_only_that_group() -> None:
    """--group worker: web's missing machines are not created, worker's are."""
    app = narrow_groups(_app({"ams": 2}, {"fra": 1}), ["worker"])
    result = plan(app, [])
    assert [(a.kind, a.slot) for a in result.actions] == [("create", "worker-fra-0")]


def test_group_targeting_never_destroys_other_groups_even_when_pruning() -> None:
    """A removed group's machines would be pruned; targeting another group leaves them alone."""
    fly = FakeFly()
    both = _app({"ams": 1}, {"fra": 2})
    live = fly.apply(plan(both, []), [])
    web_only = _app({"ams": 2}, prune=True)  # worker removed from the file, prune on
    untargeted = plan(web_only, live, prune=True)
    assert len(untargeted.destroys) == 2  # without targeting: the worker orphans go
    result = plan(narrow_groups(web_only, ["web"]), live, prune=True)
    assert [(a.kind, a.slot) for a in result.changes] == [("create", "web-ams-1")]
    assert not any(isinstance(a, Destroy) for a in result.actions)
    assert result.orphans == ()  # worker's orphans are outside the target


def test_targeted_orphans_of_the_group_are_still_pruned() -> None:
    """An orphan claiming the targeted group is the target's to prune."""
    fly = FakeFly()
    live = fly.apply(plan(_app({"ams": 1}, {"fra": 1}), []), [])
    result = plan(narrow_groups(_app({"ams": 1}), ["worker"]), live, prune=True)
    assert [(a.kind, a.slot) for a in result.changes] == [("destroy", "worker-fra-0")]


def test_unknown_group_names_are_reported() -> None:
    assert unknown_groups([_app({"ams": 1}, {"fra": 1})], ["web", "wrker"]) == ["wrker"]
    assert narrow_groups(_app({"ams": 1}), None).only_groups is None


def test_paused_app_plans_nothing_and_says_why() -> None:
    """paused: true in the file: no action even with everything missing; text and JSON say so."""
    app = _app({"ams": 2}, paused=True)
    result = plan(app, [])
    assert result.actions == ()
    assert not result.has_changes
    assert result.paused == "paused: true in the file"
    assert "PAUSED (paused: true in the file)" in render(result)
    assert to_document(result)["apps"][0]["paused"] == "paused: true in the file"


def test_a_paused_drifted_app_is_not_reverted() -> None:
    """A hand-fixed machine of a paused app stays as it is (no update planned)."""
    fly = FakeFly()
    app = _app({"ams": 1})
    live = fly.apply(plan(app, []), [])
    hotfix = _app({"ams": 1}).model_copy(update={"groups": ()})  # everything would go
    assert plan(hotfix, live, prune=True, allow_empty=True).has_changes
    paused = pause(hotfix, "marker paused/acme")
    result = plan(paused, live, prune=True, allow_empty=True)
    assert result.actions == ()
    assert result.orphans == ()
    assert result.managed_count == 1


def test_pause_keeps_the_first_reason() -> None:
    app = pause(_app({"ams": 1}, paused=True), "--pause-app")
    assert app.paused == "paused: true in the file"
    assert pause(_app({"ams": 1}), None).paused is None


def test_marker_file_pauses_an_app(tmp_path: Path) -> None:
    assert not paused_by_marker(tmp_path, "acme")
    (tmp_path / "paused").mkdir()
    (tmp_path / "paused" / "acme").write_text("hot-fixing the image, ask alice\n")
    assert paused_by_marker(tmp_path, "acme")
    assert not paused_by_marker(tmp_path, "other")
    assert not paused_by_marker(tmp_path, "../paused/acme")
    assert marker_reason(tmp_path, "acme") == f"marker {tmp_path / 'paused' / 'acme'}"
