"""The documents ``adopt`` and ``restart`` print with ``--output json`` are plan's: they validate
against the shipped schema, their records carry plan's keys, and the schema's ``results``
vocabulary is the outcome table's."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from dataclasses import replace
from typing import Any, get_args

from jsonschema import Draft202012Validator

from controller.cli.adopt import adoptable_lines, adoptable_records
from controller.cli.jsonout import emit, from_result
from controller.cli.restart import restart_document
from controller.core.outcomes import Outcome
from controller.execution.outcomes import ActionKind, MachineResult
from controller.model.desired import parse_app
from controller.planning.adopt import adoption_document, match
from controller.planning.plan import plan
from controller.planning.render import SCHEMA_PATH, to_document
from controller.planning.restarting import restart_plan
from tests.core.planning_support import FakeFly

SCHEMA = json.loads(SCHEMA_PATH.read_text())
IMAGE = "registry.fly.io/acme:v1"
APP = parse_app(
    {"app": "acme", "groups": {"web": {"regions": {"ams": 3}, "config": {"image": IMAGE}}}}
)


def _valid(document: dict[str, Any]) -> dict[str, Any]:
    Draft202012Validator(SCHEMA).validate(document)
    plan_keys = set(to_document(plan(APP, []))["machines"][0])
    assert all(set(r) == plan_keys for r in document["machines"]), "plan's record keys"
    return document


def test_the_results_vocabulary_is_the_outcome_table_and_the_action_kinds() -> None:
    results = SCHEMA["properties"]["results"]["items"]["properties"]
    assert set(results["outcome"]["enum"]) == {o.value for o in Outcome}
    assert set(results["action"]["enum"]) == {*get_args(ActionKind), "adopt"}


def test_restart_document_lists_restarts_and_machines_not_running() -> None:
    fly = FakeFly()
    live = fly.apply(plan(APP, []), [])
    live[2] = replace(live[2], state="stopped")
    document = _valid(restart_document(restart_plan(APP, live)))
    assert [(r["action"], r["slot"]) for r in document["machines"]] == [
        ("restart", "web-ams-0"),
        ("restart", "web-ams-1"),
        ("noop", "web-ams-2"),
    ]
    assert document["summary"]["noop"] == 1
    result = MachineResult(
        app="acme",
        machine_id=live[0].id,
        slot="web-ams-0",
        group="web",
        region="ams",
        action="restart",
        outcome=Outcome.UNHEALTHY,
        message="not healthy after 30s: token=abc123456",
    )
    out = io.StringIO()
    with redirect_stdout(out):
        emit(document, [from_result(result, lambda text: text.replace("abc123456", "***"))])
    printed = _valid(json.loads(out.getvalue()))
    [record] = printed["results"]
    assert (record["outcome"], record["message"]) == (
        "unhealthy",
        "not healthy after 30s: token=***",
    )


def test_adoption_document_lists_proposals_and_machines_no_slot_fits() -> None:
    fly = FakeFly()
    mine = fly.machine({"image": IMAGE}, "ams")
    other = fly.machine({"image": "flyio/postgres:16"}, "ams")
    document = _valid(adoption_document(match(APP, [mine, other]), [mine, other]))
    records = {r["machine_id"]: r for r in document["machines"]}
    assert records[mine.id]["action"] == "adopt"
    assert records[mine.id]["slot"] == "web-ams-0"
    assert records[mine.id]["current_version"] == mine.version
    assert records[other.id]["action"] == "unmanaged"
    assert document["summary"]["adopt"] == 1
    assert document["summary"]["text"] == "Adopt: 1 machine(s) into 3 free slot(s)."
    assert [a["status"] for a in document["apps"]] == ["changes"]
    empty = _valid(adoption_document(match(APP, []), []))
    assert (empty["summary"]["text"], empty["apps"][0]["status"]) == (
        "Nothing to adopt.",
        "in_sync",
    )


def test_plan_lists_many_adoptable_machines_in_a_few_lines() -> None:
    fly = FakeFly()
    big = parse_app(
        {"app": "acme", "groups": {"web": {"regions": {"ams": 30}, "config": {"image": IMAGE}}}}
    )
    proposal = match(big, [fly.machine({"image": IMAGE}, "ams") for _ in range(30)])
    lines = adoptable_lines([proposal], "desired")
    assert len(lines) == 4
    assert lines[-1] == (
        "acme: 27 more unmanaged machines in region ams can be adopted into group web "
        "(same config): machine-reconciler adopt desired --app acme"
    )
    assert len(adoptable_records([proposal])) == 30, "the JSON keeps every one"
