"""Plans show the digest Fly resolved the running image to (issue 11): a tag may move, the
digest says what really runs.  Text shows it on updates; the JSON carries it on updates and
no-ops, and validates against the shipped schema."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from controller.model.actual import LiveMachine
from controller.model.desired import parse_app
from controller.planning.plan import NoOp, Update, plan
from controller.planning.render import SCHEMA_PATH, render, to_json

DIGEST = "sha256:" + "ab" * 32


def _app(image: str) -> Any:
    return parse_app(
        {
            "app": "web",
            "groups": {
                "web": {
                    "regions": {"ams": 1},
                    "config": {"image": image, "guest": {"cpus": 1, "memory_mb": 256}},
                }
            },
        }
    )


def _live(image: str, digest: str | None) -> list[LiveMachine]:
    machine = plan(_app(image), []).creates[0]
    data: dict[str, Any] = {
        "id": "3d8d413b29d089",
        "region": "ams",
        "state": "started",
        "version": "01HQ73A7BFFDF1B6WMGHFZZ4E7",
        "config": dict(machine.config),
    }
    if digest is not None:
        data["image_ref"] = {"repository": "acme/web", "tag": "v1", "digest": digest}
    return [LiveMachine.from_api(data)]


def test_the_digest_comes_from_image_ref() -> None:
    """``image_ref.digest`` is read; a machine without one has None, not an empty string."""
    assert _live("registry.fly.io/web:v1", DIGEST)[0].image_digest == DIGEST
    assert _live("registry.fly.io/web:v1", None)[0].image_digest is None


def test_an_in_sync_machine_carries_its_digest_in_the_json() -> None:
    """A no-op still says which digest runs: 'no changes' for a moving tag is checkable."""
    result = plan(_app("registry.fly.io/web:v1"), _live("registry.fly.io/web:v1", DIGEST))
    [noop] = result.actions
    assert isinstance(noop, NoOp)
    assert noop.image_digest == DIGEST
    document = json.loads(to_json(result))
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert document["machines"][0]["image_digest"] == DIGEST


def test_an_update_shows_what_runs_now_in_text_and_json() -> None:
    """The update line is followed by the digest running before the change."""
    result = plan(_app("registry.fly.io/web:v2"), _live("registry.fly.io/web:v1", DIGEST))
    [update] = result.actions
    assert isinstance(update, Update)
    assert f"(runs {DIGEST} now)" in render(result)
    document = json.loads(to_json(result))
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert document["machines"][0]["image_digest"] == DIGEST
