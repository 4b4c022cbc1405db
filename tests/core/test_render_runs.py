"""Big plans stay readable (issue 14): long runs of similar machines are cut to their first few
and one counting line, in every listing of the text plan, while a small plan prints one line per
machine as before and the JSON keeps every machine (and every volume)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from jsonschema import Draft202012Validator

from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp, parse_app
from controller.planning.adopt import match
from controller.planning.adopt import render as render_adoption
from controller.planning.plan import plan
from controller.planning.render import (
    RUN_HEAD,
    RUN_IN_FULL,
    SCHEMA_PATH,
    SUMMARISED_NOTE,
    Entry,
    render,
    summarise_runs,
    to_document,
)
from controller.planning.restarting import restart_plan
from tests.core.planning_support import FakeFly

SCHEMA = json.loads(SCHEMA_PATH.read_text())
MOUNT = {"path": "/data", "volume": {"name": "pg_data", "size_gb": 3}}


def _app(regions: dict[str, int], image: str = "registry.fly.io/acme:v1", **top: Any) -> DesiredApp:
    group: dict[str, Any] = {"regions": regions, "config": {"image": image}}
    group.update(top.pop("group", {}))
    return parse_app(
        {"app": "acme", "groups": {"web": group}, "max_create": 20_000, **top},
        source="desired_state/acme.yaml",
    )


def _fleet(regions: dict[str, int], **group: Any) -> list[LiveMachine]:
    return FakeFly().apply(plan(_app(regions, group=group), []), [])


def _document(*plans: Any) -> dict[str, Any]:
    document = to_document(list(plans))
    Draft202012Validator(SCHEMA).validate(document)
    return document


def _entry(key: str, n: int) -> Entry:
    return Entry(key, [f"{key}{n}"], lambda more: f"{more} more {key}")


# ------------------------------------------------------------------------- summarise_runs


def test_a_run_of_at_most_run_in_full_prints_every_entry() -> None:
    entries = [_entry("a", n) for n in range(RUN_IN_FULL)]
    assert summarise_runs(entries) == [f"a{n}" for n in range(RUN_IN_FULL)]


def test_a_longer_run_prints_its_head_and_one_counting_line() -> None:
    entries = [_entry("a", n) for n in range(RUN_IN_FULL + 1)]
    head = [f"a{n}" for n in range(RUN_HEAD)]
    assert summarise_runs(entries) == [*head, f"{RUN_IN_FULL + 1 - RUN_HEAD} more a"]


def test_runs_are_consecutive_entries_with_one_key() -> None:
    """Another key ends a run; the same key later starts a new one (order is kept)."""
    entries = [
        *(_entry("a", n) for n in range(20)),
        _entry("b", 0),
        *(_entry("a", n) for n in range(20, 22)),
    ]
    assert summarise_runs(entries) == ["a0", "a1", "a2", "17 more a", "b0", "a20", "a21"]


# ------------------------------------------------------------------------------ the plan


def test_a_small_plan_prints_one_line_per_machine_and_no_note() -> None:
    """Ten creates in one region (a run of RUN_IN_FULL) print exactly as they always did."""
    text = render(plan(_app({"ams": RUN_IN_FULL}), []))
    creates = [line for line in text.splitlines() if line.startswith("  + create ")]
    assert [line.split()[2] for line in creates] == [f"web-ams-{n}" for n in range(RUN_IN_FULL)]
    assert "more machines" not in text
    assert SUMMARISED_NOTE not in text


def test_10000_creates_print_a_few_lines_and_the_json_lists_every_one() -> None:
    big = plan(_app({"ams": 10_000, "iad": 2}), [])
    lines = render(big).splitlines()
    assert len(lines) < 20, lines
    assert "  + create 9,997 more machines in web/ams like the above" in lines
    assert [line.split()[2] for line in lines if line.startswith("  + create web-")] == [
        "web-ams-0",
        "web-ams-1",
        "web-ams-2",
        "web-iad-0",
        "web-iad-1",
    ]
    assert f"  {SUMMARISED_NOTE}" in lines
    assert lines[-1] == "Plan: 10002 to create, 0 to update, 0 to destroy."
    document = _document(big)
    assert document["summary"]["create"] == 10_002
    slots = [r["slot"] for r in document["machines"] if r["action"] == "create"]
    assert len(slots) == len(set(slots)) == 10_002


def test_updates_with_the_same_diff_are_counted_and_a_different_one_breaks_the_run() -> None:
    live = _fleet({"ams": 40})
    odd = live[20]
    live[20] = replace(odd, config={**odd.config, "env": {"EXTRA": "by hand"}})
    text = render(plan(_app({"ams": 40}, image="registry.fly.io/acme:v2"), live))
    lines = text.splitlines()
    assert "  ~ update 17 more machines in web/ams like the above" in lines  # web-ams-0..19
    assert any(" web-ams-20 (group web, region ams): " in ln for ln in lines)
    assert "      - env.EXTRA: (sensitive)" in lines  # an env name only the live side has
    assert "  ~ update 16 more machines in web/ams like the above" in lines  # web-ams-21..39
    assert lines[-1] == "Plan: 0 to create, 40 to update, 0 to destroy."


def test_destroys_and_their_pruned_volumes_are_counted() -> None:
    live = _fleet({"ams": 40})
    live = [
        replace(m, config={**m.config, "mounts": [{"volume": f"vol_{n}", "path": "/data"}]})
        for n, m in enumerate(live)
    ]
    app = _app({"ams": 20}, group={"mounts": [MOUNT]}, prune_volumes=True, max_destroy=0.9)
    pruned = plan(app, live)
    lines = render(pruned).splitlines()
    assert [ln for ln in lines if "more machines" in ln] == [
        "  - destroy 17 more machines in web/ams like the above (and their volumes: prune_volumes)"
    ]
    assert sum(ln.startswith("      - volume vol_") for ln in lines) == RUN_HEAD
    volumes = _document(pruned)["volumes"]
    assert sorted(v["volume_id"] for v in volumes) == sorted(f"vol_{n}" for n in range(20, 40))
    assert {v["action"] for v in volumes} == {"destroy"}


def test_no_ops_are_one_line_whatever_their_number() -> None:
    live = _fleet({"ams": 500})
    assert render(plan(_app({"ams": 500}), live)).splitlines()[1:] == [
        "  500 machine(s) in sync",
        "",
        "No changes.",
    ]


def test_unmanaged_and_orphaned_machines_are_counted() -> None:
    fly = FakeFly(start=10_000)
    live = _fleet({"ams": 15})
    orphaned = [
        replace(m, config={**m.config, "metadata": {**m.metadata, "reconciler/group": "gone"}})
        for m in live
    ]
    unmanaged = [fly.machine({"image": "flyctl/made:this"}, "iad") for _ in range(25)]
    lines = render(plan(_app({"fra": 1}), [*orphaned, *unmanaged])).splitlines()
    assert "    12 more in gone/ams like the above" in lines
    assert "    22 more in region iad, started, like the above" in lines
    assert f"  {SUMMARISED_NOTE}" in lines
    assert len(lines) < 20


def test_detect_only_drift_reports_are_counted() -> None:
    live = _fleet({"ams": 12})
    app = _app({"ams": 12}, image="registry.fly.io/acme:v2", detect_only=True)
    lines = render(plan(app, live)).splitlines()
    assert (
        "  ! drift spec_changed 9 more machines in web/ams like the above "
        "(detect_only: not corrected)"
    ) in lines
    assert lines[-1] == "No changes. Drift: 12 (detect_only, not corrected)."


# ------------------------------------------------------------------------------- volumes


def test_the_json_lists_the_volume_each_create_attaches() -> None:
    """Each create's ``+ volume`` line is a record, tied to its slot; ids are not known yet."""
    created = plan(_app({"ams": 2, "iad": 1}, group={"mounts": [MOUNT]}), [])
    volumes = _document(created)["volumes"]
    assert [(v["slot"], v["region"]) for v in volumes] == [
        ("web-ams-0", "ams"),
        ("web-ams-1", "ams"),
        ("web-iad-0", "iad"),
    ]
    assert volumes[0] == {
        "app": "acme",
        "action": "attach_or_create",
        "machine_id": None,
        "slot": "web-ams-0",
        "group": "web",
        "region": "ams",
        "volume_id": None,
        "name": "pg_data",
        "size_gb": 3,
        "path": "/data",
        "reason": "an unattached volume of that name in the region, else a new one",
    }
    assert _document(plan(_app({"ams": 1}), []))["volumes"] == []


# ------------------------------------------------------------------------------- adoption


def test_adoption_proposals_and_machines_no_slot_fits_are_counted() -> None:
    fly = FakeFly()
    mine = [fly.machine({"image": "registry.fly.io/acme:v1"}, "ams") for _ in range(30)]
    others = [fly.machine({"image": "flyio/postgres:16"}, "ams") for _ in range(15)]
    proposal = match(_app({"ams": 30}), [*mine, *others])
    assert len(proposal.adoptions) == 30
    lines = render_adoption(proposal).splitlines()
    assert "  = adopt 27 more machines into web/ams like the above" in lines
    assert "  12 more unmanaged machines no free slot fits (kept unmanaged)" in lines
    assert len(lines) < 12
    small = render_adoption(match(_app({"ams": 2}), mine[:2])).splitlines()
    assert sum(line.startswith("  = adopt ") for line in small) == 2


def test_restarts_are_counted() -> None:
    live = _fleet({"ams": 20})
    lines = render(restart_plan(_app({"ams": 20}), live).plan).splitlines()
    assert "  ↻ restart 17 more machines in web/ams like the above" in lines
    assert lines[-1] == "Plan: 0 to create, 0 to update, 0 to destroy. Also: 20 to restart."
