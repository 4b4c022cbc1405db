"""The planner and renderer for issue 10's lifecycle features: ``org:`` (create a missing app),
``state: started | stopped``, restart generations and volumes.  Pure: no I/O."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from controller.model.actual import RESTART_KEY, LiveMachine
from controller.model.desired import DesiredApp, DesiredStateInvalid, parse_app
from controller.planning.plan import DriftKind, Restart, Start, Stop, Update, plan
from controller.planning.render import SCHEMA_PATH, render, to_document
from controller.planning.restarting import restart_plan
from tests.core.planning_support import FakeFly

SCHEMA = json.loads(SCHEMA_PATH.read_text())


def _app(group: dict[str, Any] | None = None, **top: Any) -> DesiredApp:
    spec: dict[str, Any] = {
        "regions": {"ams": 2},
        "config": {"image": "registry.fly.io/acme:v1"},
        **(group or {}),
    }
    return parse_app({"app": "acme", "groups": {"web": spec}, **top})


def _document(*plans: Any) -> dict[str, Any]:
    document = to_document(list(plans))
    Draft202012Validator(SCHEMA).validate(document)
    return document


# ------------------------------------------------------------------------------ org


def test_a_missing_app_with_org_plans_create_app_then_creates() -> None:
    app_plan = plan(_app(org="acme-org"), [], app_missing=True)
    assert app_plan.create_app == "acme-org"
    assert app_plan.has_changes
    text = render(app_plan)
    assert "+ create app acme (org acme-org): app not found" in text
    assert text.index("+ create app") < text.index("+ create web-ams-0")
    assert "Apps to create: 1." in text
    assert _document(app_plan)["apps"][0]["create_app"] == "acme-org"


def test_an_existing_app_or_a_detect_only_one_is_never_created() -> None:
    assert plan(_app(org="acme-org"), []).create_app is None
    watched = plan(_app(org="acme-org", detect_only=True), [], app_missing=True)
    assert watched.create_app is None
    assert not watched.has_changes


def test_org_must_be_a_slug() -> None:
    with pytest.raises(DesiredStateInvalid, match="invalid org slug"):
        _app(org="Acme Org")


# ------------------------------------------------------------------------------ state


def _live(app: DesiredApp, *, state: str = "started") -> list[LiveMachine]:
    fly = FakeFly()
    return [replace(m, state=state) for m in fly.apply(plan(app, []), [])]


def test_a_stopped_group_creates_without_launching_and_stops_running_machines() -> None:
    stopped = _app({"state": "stopped"})
    fresh = plan(stopped, [])
    assert [c.skip_launch for c in fresh.creates] == [True, True]
    assert "[stays stopped]" in render(fresh)
    assert _document(fresh)["machines"][0]["skip_launch"] is True

    running = _live(_app())
    app_plan = plan(stopped, running)
    assert [type(a) for a in app_plan.actions] == [Stop, Stop]
    text = render(app_plan)
    assert "■ stop" in text
    assert "Also: 2 to stop." in text
    document = _document(app_plan)
    assert document["summary"]["stop"] == 2
    assert {r["action"] for r in document["machines"]} == {"stop"}
    assert not plan(stopped, _live(_app(), state="stopped")).has_changes


def test_a_stopped_group_updates_without_starting_and_a_started_one_starts() -> None:
    changed = _app({"state": "stopped", "config": {"image": "registry.fly.io/acme:v2"}})
    updates = plan(changed, _live(_app())).updates
    assert [u.skip_launch for u in updates] == [True, True], "never started by an update"
    started = _app({"state": "started"})
    app_plan = plan(started, _live(_app(), state="stopped"))
    assert [type(a) for a in app_plan.actions] == [Start, Start]
    moved = _app({"state": "started", "config": {"image": "registry.fly.io/acme:v2"}})
    assert [u.skip_launch for u in plan(moved, _live(_app(), state="stopped")).updates] == [
        False,
        False,
    ]


def test_unset_state_leaves_the_run_state_alone() -> None:
    assert not plan(_app(), _live(_app(), state="stopped")).has_changes


def test_state_is_refused_on_an_autostopped_group() -> None:
    service = {"internal_port": 8080, "protocol": "tcp", "autostop": "stop"}
    with pytest.raises(DesiredStateInvalid, match="autostop"):
        _app({"state": "stopped", "config": {"image": "x/y:v1", "services": [service]}})


def test_detect_only_reports_a_wrong_run_state_as_drift() -> None:
    app_plan = plan(_app({"state": "stopped"}, detect_only=True), _live(_app()))
    assert not app_plan.has_changes
    assert {d.kind for d in app_plan.drift} == {DriftKind.RUN_STATE}


# ------------------------------------------------------------------------------ restarts


def test_a_changed_restart_generation_plans_restarts_and_creates_record_it() -> None:
    first = _app({"restart_generation": 1})
    assert all(c.config["metadata"][RESTART_KEY] == "1" for c in plan(first, []).creates)
    live = _live(first)
    assert not plan(first, live).has_changes
    bumped = plan(_app({"restart_generation": 2}), live)
    assert [type(a) for a in bumped.actions] == [Restart, Restart]
    assert {a.generation for a in bumped.transitions if isinstance(a, Restart)} == {"2"}
    assert "↻ restart" in render(bumped)
    assert _document(bumped)["summary"]["restart"] == 2
    stopped = plan(_app({"restart_generation": 2}), [replace(m, state="stopped") for m in live])
    restarts = [a for a in stopped.transitions if isinstance(a, Restart)]
    assert [a.running for a in restarts] == [False, False]
    assert len(restarts) == len(stopped.transitions)


def test_a_config_change_carries_the_new_generation_instead_of_a_restart() -> None:
    live = _live(_app({"restart_generation": 1}))
    changed = _app({"restart_generation": 2, "config": {"image": "registry.fly.io/acme:v2"}})
    app_plan = plan(changed, live)
    assert [type(a) for a in app_plan.actions] == [Update, Update]
    assert {u.config["metadata"][RESTART_KEY] for u in app_plan.updates} == {"2"}


def test_restart_plan_takes_running_managed_machines_of_the_selected_groups() -> None:
    app = parse_app(
        {
            "app": "acme",
            "groups": {
                "web": {"regions": {"ams": 2}, "config": {"image": "x/web:v1"}},
                "worker": {"regions": {"ams": 1}, "config": {"image": "x/worker:v1"}},
            },
        }
    )
    fly = FakeFly()
    live = fly.apply(plan(app, []), [])
    live[1] = replace(live[1], state="stopped")
    live.append(fly.machine({"image": "x/hand:v1"}, "ams"))  # unmanaged: never restarted
    everything = restart_plan(app, live)
    assert [a.slot for a in everything.plan.actions] == ["web-ams-0", "worker-ams-0"]
    assert [m.slot for m in everything.skipped] == ["web-ams-1"]
    only = restart_plan(app, live, ["worker"])
    assert [a.slot for a in only.plan.actions] == ["worker-ams-0"]
    assert all(a.generation is None for a in only.plan.transitions)


# ------------------------------------------------------------------------------ volumes

MOUNT = {"path": "/data", "volume": {"name": "pg_data", "size_gb": 3}}


def _mounted(app: DesiredApp) -> list[LiveMachine]:
    """Live machines as Fly lists them after creating them with a volume each."""
    out = []
    for n, machine in enumerate(_live(app)):
        mounts = [{"volume": f"vol_{n}", "path": "/data", "name": "pg_data", "size_gb": 3}]
        out.append(replace(machine, config={**machine.config, "mounts": mounts}))
    return out


def test_mounts_create_volumes_and_updates_keep_the_attached_one() -> None:
    app = _app({"mounts": [MOUNT]})
    creates = plan(app, []).creates
    assert [c.mounts[0].volume.name for c in creates] == ["pg_data", "pg_data"]
    assert "mounts" not in creates[0].config, "the executor adds the volume it picks"
    live = _mounted(app)
    assert not plan(app, live).has_changes, "the attached volume is not drift"
    changed = _app({"mounts": [MOUNT], "config": {"image": "registry.fly.io/acme:v2"}})
    updates = plan(changed, live).updates
    assert [u.config["mounts"][0]["volume"] for u in updates] == ["vol_0", "vol_1"]


def test_volumes_are_destroyed_only_with_prune_volumes() -> None:
    live = _mounted(_app({"mounts": [MOUNT]}))
    kept = plan(_app({"regions": {"ams": 1}, "mounts": [MOUNT]}), live)
    assert [d.volumes for d in kept.destroys] == [()]
    pruned = plan(_app({"regions": {"ams": 1}, "mounts": [MOUNT]}, prune_volumes=True), live)
    assert [d.volumes for d in pruned.destroys] == [("vol_1",)]
    assert "- volume vol_1 (prune_volumes)" in render(pruned)


def test_mounts_are_declared_once_per_group() -> None:
    with pytest.raises(DesiredStateInvalid, match=r"not in config\.mounts"):
        _app(
            {
                "mounts": [MOUNT],
                "config": {
                    "image": "registry.fly.io/acme:v1",
                    "mounts": [{"volume": "vol_x", "path": "/x"}],
                },
            }
        )
    with pytest.raises(DesiredStateInvalid, match="invalid volume name"):
        _app({"mounts": [{"path": "/data", "volume": {"name": "Bad-Name"}}]})
