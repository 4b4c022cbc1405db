"""Saved plans (pure): the document, its parsing, and every reason apply --plan refuses."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from controller.model.desired import DesiredApp, parse_app
from controller.planning.plan import plan
from controller.planning.planfile import (
    FORMAT_VERSION,
    PlanFileInvalid,
    build,
    check,
    desired_hashes,
    parse,
)
from controller.planning.targeting import narrow_groups
from tests.core.planning_support import FakeFly

SECRET = "postgres://app:correct-horse-battery-staple@db.internal/app"


def _app(image: str = "registry.fly.io/acme:v1", secret: str = SECRET, **top: Any) -> DesiredApp:
    return parse_app(
        {
            "app": "acme",
            "defaults": {"config": {"image": image, "env": {"DATABASE_URL": secret}}},
            "groups": {"web": {"regions": {"ams": 2}}, "worker": {"regions": {"fra": 1}}},
            **top,
        },
        source="desired/acme.yaml",
    )


def _saved(app: DesiredApp, live: list[Any], salt: str = "00ff") -> tuple[dict[str, Any], Any]:
    made = plan(app, live)
    document = build([(app, made, live)], salt=salt, prune=None)
    return json.loads(json.dumps(document)), parse(document)


def test_the_document_records_every_action_with_its_version_and_no_secret() -> None:
    fly = FakeFly()
    live = fly.apply(plan(_app(), []), [])
    app = _app(image="registry.fly.io/acme:v2")
    document, saved = _saved(app, live)
    assert document["format_version"] == FORMAT_VERSION
    [entry] = saved.apps
    by_id = {m.id: m.version for m in live}
    assert [a.action for a in entry.actions] == ["update", "update", "update"]
    assert all(a.version == by_id[a.machine_id] for a in entry.actions if a.machine_id)
    text = json.dumps(document)
    assert SECRET not in text
    assert "correct-horse" not in text
    assert document["review"]["summary"]["update"] == 3


def test_an_unchanged_world_passes_the_check() -> None:
    fly = FakeFly()
    live = fly.apply(plan(_app(), []), [])
    app = _app(image="registry.fly.io/acme:v2")
    _, saved = _saved(app, live)
    assert check(saved.apps[0], saved.salt, app, plan(app, live), live) == []


def test_a_moved_machine_version_is_named() -> None:
    fly = FakeFly()
    live = fly.apply(plan(_app(), []), [])
    app = _app(image="registry.fly.io/acme:v2")
    _, saved = _saved(app, live)
    bumped = [replace(live[0], version="01JBUMPED"), *live[1:]]
    [problem] = check(saved.apps[0], saved.salt, app, plan(app, bumped), bumped)
    assert live[0].id in problem
    assert "01JBUMPED" in problem


def test_a_noop_machine_that_moved_is_refused_too() -> None:
    """Versions of in-sync machines count: the change as a whole was reviewed."""
    fly = FakeFly()
    app = _app()
    live = fly.apply(plan(app, []), [])
    _, saved = _saved(app, live)
    gone = live[1:]
    [problem] = check(saved.apps[0], saved.salt, app, plan(app, gone), gone)
    assert f"machine {live[0].id}" in problem
    assert "gone" in problem


def test_a_changed_file_or_secret_names_the_app() -> None:
    fly = FakeFly()
    live = fly.apply(plan(_app(), []), [])
    _, saved = _saved(_app(), live)
    edited = _app(image="registry.fly.io/acme:v3")
    [problem] = check(saved.apps[0], saved.salt, edited, plan(edited, live), live)
    assert "desired state of app acme changed" in problem
    rotated = _app(secret="postgres://app:another@db.internal/app")
    [problem] = check(saved.apps[0], saved.salt, rotated, plan(rotated, live), live)
    assert "sensitive value of app acme" in problem
    assert "another" not in problem


def test_secrets_hash_is_salted_and_public_hash_is_not() -> None:
    public_a, secret_a = desired_hashes(_app(), "aa")
    public_b, secret_b = desired_hashes(_app(), "bb")
    assert public_a == public_b
    assert secret_a != secret_b
    assert desired_hashes(_app(secret="other"), "aa")[0] == public_a


def test_a_new_machine_changes_the_plan() -> None:
    """A managed machine appearing in a slot: the actions differ from the saved ones."""
    fly = FakeFly()
    app = _app()
    _, saved = _saved(app, [])
    live = fly.apply(plan(app, []), [])[:1]
    [problem] = check(saved.apps[0], saved.salt, app, plan(app, live), live)
    assert "not the one saved" in problem


def test_targeted_groups_are_kept() -> None:
    app = narrow_groups(_app(), ["worker"])
    _, saved = _saved(app, [])
    assert saved.apps[0].only_groups == ("worker",)
    assert [a.group for a in saved.apps[0].actions] == ["worker"]


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"format": "terraform"},
        {"format": "machine-reconciler-plan", "format_version": 99},
        {"format": "machine-reconciler-plan", "format_version": 1, "options": {}, "apps": [1]},
        {
            "format": "machine-reconciler-plan",
            "format_version": 1,
            "salt": "aa",
            "options": {},
            "apps": [{"app": "a", "actions": [{"action": "noop", "region": 3}]}],
        },
    ],
)
def test_bad_documents_are_rejected(document: Any) -> None:
    with pytest.raises(PlanFileInvalid):
        parse(document)
