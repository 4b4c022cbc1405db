"""A 10,000-machine plan through the real CLI against the served emulator (issue 14): the text
of ``plan`` and of a refused ``apply`` stays a screenful with the right counts, while
``plan --output json`` still lists every machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from controller.cli.apply import REPEATS_SHOWN
from controller.planning.render import SCHEMA_PATH, SUMMARISED_NOTE
from tests.e2e.conftest import control, run_cli
from tests.e2e.test_cli_apply import live

pytestmark = pytest.mark.e2e

MACHINES = 10_000
BIG = """app: big
{max_create}groups:
  web:
    regions: {{ams: {machines}}}
    config:
      image: registry.fly.io/big:v1
      env: {{LOG_LEVEL: info}}
    mounts: [{{path: /data, volume: {{name: data, size_gb: 1}}}}]
"""


def _desired(tmp_path: Path, *, max_create: int | None) -> Path:
    directory = tmp_path / f"desired-{max_create}"
    directory.mkdir()
    limit = "" if max_create is None else f"max_create: {max_create}\n"
    (directory / "big.yaml").write_text(BIG.format(max_create=limit, machines=MACHINES))
    return directory


@pytest.fixture
def url(emulator_url: str) -> str:
    served = emulator_url
    control(served, "POST", "/seed", {"apps": [{"name": "big"}]})
    return served


def test_plan_of_10000_creates_is_a_screenful_and_the_json_lists_each(
    url: str, tmp_path: Path
) -> None:
    desired = _desired(tmp_path, max_create=MACHINES)
    text = run_cli("plan", str(desired), url=url)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) < 60, text.stdout
    assert "  + create 9,997 more machines in web/ams like the above" in lines
    assert sum(line.startswith("  + create web-ams-") for line in lines) == 3
    assert f"  {SUMMARISED_NOTE}" in lines
    assert lines[-1] == f"Plan: {MACHINES} to create, 0 to update, 0 to destroy."

    as_json = run_cli("plan", str(desired), "--output", "json", url=url)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(document)
    creates = [r["slot"] for r in document["machines"] if r["action"] == "create"]
    assert sorted(creates) == sorted(f"web-ams-{n}" for n in range(MACHINES))
    assert document["summary"]["create"] == MACHINES
    assert len(document["volumes"]) == MACHINES
    assert {v["name"] for v in document["volumes"]} == {"data"}


def test_a_refused_apply_of_10000_creates_is_a_screenful(url: str, tmp_path: Path) -> None:
    """Past max_create (default 100): exit 4, nothing created, and the per-machine refusals
    folded into a count instead of 10,000 lines."""
    result = run_cli("apply", str(_desired(tmp_path, max_create=None)), "--yes", url=url)
    assert result.returncode == 4, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 60, result.stdout
    assert "  + create 9,997 more machines in web/ams like the above" in lines
    assert f"would create {MACHINES} machines of big, more than max_create 100" in result.stdout
    folded = f"big: create -> refused for {MACHINES - REPEATS_SHOWN:,} more machines in web/ams"
    assert sum(line.endswith(f"{folded} like the above") for line in lines) == 1
    assert sum(" -> refused: would create" in line for line in lines) == REPEATS_SHOWN
    assert live(url, "big") == []
