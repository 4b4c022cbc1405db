"""The planner and renderer for issue 10's lifecycle features: ``org:`` (create a missing app),
``state: started | stopped``, restart generations and volumes.  Pure: no I/O."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from controller.model.desired import DesiredApp, DesiredStateInvalid, parse_app
from controller.planning.plan import plan
from controller.planning.render import SCHEMA_PATH, render, to_document

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
