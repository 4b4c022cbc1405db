"""Rendering plans: terraform-like text and the stable JSON document."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp, parse_app
from controller.planning.plan import AppPlan, plan
from controller.planning.render import render, summary_line, to_document, to_json
from tests.core.planning_support import FakeFly

SECRET = "hunter2-SUPER-SECRET"


def _app(regions: dict[str, int], image: str = "registry.fly.io/acme:v1", **top: Any) -> DesiredApp:
    return parse_app(
        {
            "app": "acme",
            "groups": {
                "web": {
                    "regions": regions,
                    "config": {"image": image, "env": {"DB_URL": SECRET, "LOG_LEVEL": "info"}},
                }
            },
            "sensitive": ["DB_URL"],
            **top,
        },
        source="desired_state/acme.yaml",
    )


def _fleet(regions: dict[str, int]) -> tuple[FakeFly, list[LiveMachine]]:
    fly = FakeFly()
    return fly, fly.apply(plan(_app(regions), []), [])


def _mixed_plan() -> AppPlan:
    """A create, two updates (image; image + secret), two destroys, an unmanaged machine."""
    fly, live = _fleet({"ams": 2, "iad": 1, "sin": 1})
    web0 = next(m for m in live if m.slot == "web-ams-0")
    env = {"DB_URL": "old-" + SECRET, "LOG_LEVEL": "info"}
    live = [
        replace(m, config={**m.config, "env": env}, state="stopped") if m is web0 else m
        for m in live
    ]
    live.append(fly.machine({"image": "flyctl/made:this", "env": {"TOKEN": SECRET}}, "ams"))
    return plan(_app({"ams": 1, "fra": 1, "sin": 1}, image="registry.fly.io/acme:v2"), live)


def test_text_shows_creates_updates_destroys_and_summary() -> None:
    """Each action gets its terraform-like marker and the summary counts them."""
    text = render(_mixed_plan())
    lines = text.splitlines()
    assert lines[0] == "acme (desired_state/acme.yaml)"
    assert any(line.startswith("  + create web-fra-0 (group web, region fra): ") for line in lines)
    assert any(
        line.startswith("  ~ update ")
        and "web-ams-0 (group web, region ams) [stays stopped]: " in line
        for line in lines
    )
    assert '      ~ image: "registry.fly.io/acme:v1" -> "registry.fly.io/acme:v2"' in lines
    assert any(line.startswith("  - destroy ") and "web-ams-1" in line for line in lines)
    assert any(line.startswith("  - destroy ") and "web-iad-0" in line for line in lines)
    assert lines[-1] == "Plan: 1 to create, 2 to update, 2 to destroy."


def test_sensitive_values_render_as_sensitive() -> None:
    """A changed secret env value says it changed, never the value (old or new); a literal
    value written in the file is shown, so a reviewer can review it."""
    text = render(_mixed_plan())
    assert "      ~ env.DB_URL: (sensitive) (changed)" in text.splitlines()
    assert '      + env.LOG_LEVEL: "info"' in text.splitlines()
    assert SECRET not in text


def test_env_values_from_references_or_secret_names_stay_sensitive() -> None:
    """${ENV:..} values, secret-looking names and names only the live side has are hidden."""
    from controller.loading.loader import load_text

    text = (
        "app: acme\n"
        "groups:\n"
        "  web:\n"
        "    regions: {ams: 1}\n"
        "    config:\n"
        "      image: registry.fly.io/acme:v1\n"
        "      env: {FROM_ENV: '${ENV:ACME_X}', API_TOKEN: tok-literal-1, MODE: fast}\n"
    )
    app, errors = load_text(text, "acme.yaml", environ={"ACME_X": "from-the-environment"})
    assert app is not None, errors
    fly, _ = _fleet({"ams": 1})
    live = fly.apply(plan(app, []), [])
    rendered = render(plan(app, []))
    assert "+ env.FROM_ENV: (sensitive)" in rendered
    assert "+ env.API_TOKEN: (sensitive)" in rendered
    assert '+ env.MODE: "fast"' in rendered
    assert "from-the-environment" not in rendered
    assert "tok-literal-1" not in rendered
    gone = [replace(m, config={**m.config, "env": {"OLD": "was-a-secret"}}) for m in live]
    removed = render(plan(app, gone))
    assert "- env.OLD: (sensitive)" in removed
    assert "was-a-secret" not in removed


def test_unmanaged_machines_are_listed() -> None:
    """Unmanaged machines are shown as never touched."""
    text = render(_mixed_plan())
    assert "  unmanaged machines (not ours, never touched):" in text
    assert "region ams, started" in text


def test_no_changes() -> None:
    """A converged app renders as in sync and the summary says No changes."""
    _, live = _fleet({"ams": 2})
    result = plan(_app({"ams": 2}), live)
    assert render(result).splitlines() == [
        "acme (desired_state/acme.yaml)",
        "  2 machine(s) in sync",
        "",
        "No changes.",
    ]
    assert summary_line([]) == "No changes."


def test_repeated_group_diffs_are_referenced() -> None:
    """Identical create diffs in a group are printed once and referenced afterwards."""
    text = render(plan(_app({"ams": 3}), []))
    assert text.count("+ image:") == 1
    same = "  + create web-ams-1 (group web, region ams): slot has no machine (same changes as "
    assert same + "web-ams-0)" in text


def test_refused_and_relist_are_explained() -> None:
    """Refusals and the suspicious-list note are spelled out, and named in the summary."""
    _, live = _fleet({"ams": 4})
    refused = plan(_app({"ams": 1}), live)
    text = render(refused)
    assert "  REFUSED: would destroy 3 of 4 managed machines" in text
    assert text.splitlines()[-1] == "Plan: 0 to create, 0 to update, 3 to destroy. Refused: acme."
    relist = render(plan(_app({"ams": 2}), [], previous_managed_count=4))
    assert "re-listed before anything is created" in relist


def test_orphans_and_detect_only_drift() -> None:
    """Orphans are listed with the prune hint; detect_only drift is marked as not corrected."""
    _, live = _fleet({"ams": 1})
    orphaned = [
        replace(m, config={**m.config, "metadata": {**m.metadata, "reconciler/group": "x"}})
        for m in live
    ]
    text = render(plan(_app({"ams": 1}), orphaned))
    assert "orphaned managed machines (kept; set prune: true to destroy):" in text
    drift = render(plan(_app({"ams": 2}, detect_only=True), live))
    assert "  ! drift missing (no machine) web-ams-1 (group web, region ams)" in drift
    assert drift.splitlines()[-1] == "No changes. Drift: 1 (detect_only, not corrected)."


def test_json_document_has_one_record_per_machine() -> None:
    """The JSON plan lists every machine (actions, unmanaged) with the same keys."""
    document = json.loads(to_json(_mixed_plan()))
    assert document["format_version"] == 2
    assert document["summary"]["create"] == 1
    assert document["summary"]["update"] == 2
    assert document["summary"]["destroy"] == 2
    actions = [r["action"] for r in document["machines"]]
    assert sorted(actions) == ["create", "destroy", "destroy", "unmanaged", "update", "update"]
    keys = {frozenset(r) for r in document["machines"]}
    assert len(keys) == 1
    update = next(r for r in document["machines"] if r["slot"] == "web-ams-0")
    assert update["drift"] == "spec_changed+out_of_band"
    assert update["skip_launch"] is True
    assert {
        "path": "env.DB_URL",
        "before": "(sensitive)",
        "after": "(sensitive)",
        "sensitive": True,
    } in update["changes"]
    assert document["apps"][0]["spec_hashes"].keys() == {"web"}


def test_json_is_stable_and_redacted() -> None:
    """Two renderings of the same plan are byte-identical and contain no secret."""
    first, second = to_json(_mixed_plan()), to_json(_mixed_plan())
    assert first == second
    assert SECRET not in first
    assert to_document([_mixed_plan()])["summary"]["text"] == summary_line(_mixed_plan())
