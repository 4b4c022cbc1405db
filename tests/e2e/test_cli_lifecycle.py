"""Issue 10, from demo to production, as a user runs it (CLI subprocesses against a served
emulator, or the embedded one): ``plan --embedded`` on a new file, ``org:`` creating a missing
app, ``state: started | stopped``, rolling restarts and per-machine volumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import EmulatorProcess, control, run_cli

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "desired_state"
FAST = {"boot_seconds": 0.1, "stop_seconds": 0.05, "checks_pass_seconds": 0.1}

NEW_APP = """\
app: fresh-app
{extra}
groups:
  web:
    regions: {{ams: 2}}
    config:
      image: registry.fly.io/fresh-app:v1
{group_extra}
"""


def write_app(directory: Path, extra: str = "", group_extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fresh-app.yaml"
    path.write_text(NEW_APP.format(extra=extra, group_extra=group_extra))
    return directory


@pytest.fixture
def url(start_emulator: EmulatorProcess) -> str:
    served, _ = start_emulator()
    control(served, "PATCH", "/behaviour", FAST)
    return served


def live(url: str, app: str) -> list[dict[str, Any]]:
    state = control(url, "GET", "/state")
    return [m for m in state["machines"] if m["app"] == app and m["state"] != "destroyed"]


def writes(url: str) -> list[dict[str, Any]]:
    return [e for e in control(url, "GET", "/requests") if e["method"] != "GET"]


# ------------------------------------------------------------------------------ plan --embedded


def test_plan_embedded_on_a_new_file_plans_creates_only(tmp_path: Path) -> None:
    """A file the demo seeds do not describe gets an empty app: creates, no invented drift."""
    directory = write_app(tmp_path / "desired")
    shutil.copy(EXAMPLES / "acme-web.yaml", directory / "acme-web.yaml")
    result = run_cli(
        "plan", str(directory), "--embedded", "--output", "json", url="http://127.0.0.1:9"
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    fresh = [r for r in document["machines"] if r["app"] == "fresh-app"]
    assert {r["action"] for r in fresh} == {"create"}
    assert len(fresh) == 2
    assert not [r for r in document.get("unmanaged", []) if r.get("app") == "fresh-app"]
    demo = {r["action"] for r in document["machines"] if r["app"] == "acme-web"}
    assert "update" in demo, "the demo's own app still shows its seeded drift"
