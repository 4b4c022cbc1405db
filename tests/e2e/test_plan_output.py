"""Honest plan output, as a CI pipeline reads it: failures are never "No changes", every app has
a status, the JSON validates against the shipped schema, detect_only drift exits 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from controller.planning.render import FORMAT_VERSION, SCHEMA_PATH
from tests.e2e.conftest import EXAMPLES, control, run_cli

pytestmark = pytest.mark.e2e

SCHEMA = json.loads(SCHEMA_PATH.read_text())


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    target = tmp_path / "desired"
    shutil.copytree(EXAMPLES, target)
    return target


def _document(stdout: str) -> dict[str, Any]:
    """Parse the JSON plan and validate it against the shipped schema."""
    document: dict[str, Any] = json.loads(stdout)
    Draft202012Validator(SCHEMA).validate(document)
    assert document["format_version"] == FORMAT_VERSION
    return document


def test_schema_is_valid_and_ships_with_the_package() -> None:
    """The schema is itself a valid 2020-12 schema and pins the current format_version."""
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["format_version"] == {"const": FORMAT_VERSION}
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"planning/*.json"' in pyproject


def test_a_wrong_token_is_never_no_changes(desired: Path, emulator_url: str) -> None:
    """401 for every app: text and JSON name each failed app and the status; nothing says "No
    changes"; the token is never printed."""
    url = emulator_url
    text = run_cli("plan", str(desired), url=url, FLY_API_TOKEN="wrong-token-value")
    assert text.returncode == 1
    assert "401" in text.stderr
    assert "wrong-token-value" not in text.stderr + text.stdout
    assert "No changes" not in text.stdout
    summary = text.stdout.splitlines()[-1]
    assert summary == (
        "Failed: acme-jobs (unauthorized), acme-web (unauthorized). Nothing was planned."
    )
    as_json = run_cli(
        "plan", str(desired), "--output", "json", url=url, FLY_API_TOKEN="wrong-token-value"
    )
    assert as_json.returncode == 1
    document = _document(as_json.stdout)
    assert {(a["app"], a["status"]) for a in document["apps"]} == {
        ("acme-jobs", "failed"),
        ("acme-web", "failed"),
    }
    assert {(e["app"], e["class"]) for e in document["errors"]} == {
        ("acme-jobs", "unauthorized"),
        ("acme-web", "unauthorized"),
    }
    assert all(e["request_id"] for e in document["errors"]), "the emulator sends fly-request-id"
    assert "No changes" not in document["summary"]["text"]
    assert "wrong-token-value" not in as_json.stdout + as_json.stderr


def test_a_wrong_app_name_is_named_with_the_others_planned(
    desired: Path, emulator_url: str
) -> None:
    """One app missing at Fly: it is failed (not_found); the other is planned; exit 1."""
    url = emulator_url
    control(url, "POST", "/seed", {"apps": [{"name": "acme-web"}]})
    result = run_cli("plan", str(desired), "--output", "json", url=url)
    assert result.returncode == 1
    document = _document(result.stdout)
    statuses = {a["app"]: a["status"] for a in document["apps"]}
    assert statuses == {"acme-web": "changes", "acme-jobs": "failed"}
    assert document["summary"]["failed_apps"] == ["acme-jobs"]
    assert document["summary"]["text"].startswith("Failed: acme-jobs (not_found). The other 1")
    text = run_cli("plan", str(desired), url=url)
    assert "acme-jobs\n  ERROR not_found: listing machines failed" in text.stdout


def test_detect_only_drift_exits_2_and_is_status_drift(desired: Path, emulator_url: str) -> None:
    """--detailed-exitcode: drift in a detect_only app is 2 (the fleet is not as declared)."""
    url = emulator_url
    control(url, "POST", "/seed", {"apps": [{"name": "acme-web"}]})
    web = desired / "acme-web.yaml"
    web.write_text(web.read_text() + "detect_only: true\n")
    args = ("plan", str(desired), "--app", "acme-web", "--detailed-exitcode")
    result = run_cli(*args, url=url)
    assert result.returncode == 2, result.stderr
    assert "Drift: 6 (detect_only, not corrected)" in result.stdout
    as_json = run_cli(*args, "--output", "json", url=url)
    assert as_json.returncode == 2
    document = _document(as_json.stdout)
    assert [a["status"] for a in document["apps"]] == ["drift"]
    assert document["errors"] == []


def test_an_invalid_file_is_status_invalid(desired: Path, emulator_url: str) -> None:
    """A broken file: its app is listed as invalid in the JSON, the other app is planned."""
    url = emulator_url
    control(url, "POST", "/seed", {"apps": [{"name": "acme-web"}, {"name": "acme-jobs"}]})
    jobs = desired / "acme-jobs.yaml"
    jobs.write_text(jobs.read_text().replace("memory_mb:", "memry_mb:"))
    result = run_cli("plan", str(desired), "--output", "json", url=url)
    assert result.returncode == 1
    assert "did you mean 'memory_mb'?" in result.stderr
    document = _document(result.stdout)
    statuses = {a["app"]: a["status"] for a in document["apps"]}
    assert statuses == {"acme-web": "changes", "acme-jobs": "invalid"}
    assert document["errors"][0]["class"] == "invalid_desired_state"


def test_apply_with_a_wrong_token_names_the_apps(desired: Path, emulator_url: str) -> None:
    """apply: the plan and the summary table name each failed app; never "No changes"; exit 1."""
    url = emulator_url
    result = run_cli("apply", str(desired), "--yes", url=url, FLY_API_TOKEN="wrong-token-value")
    assert result.returncode == 1
    assert "No changes" not in result.stdout
    assert "Failed: acme-jobs (unauthorized), acme-web (unauthorized)." in result.stdout
    assert "failed (unauthorized)" in result.stdout  # the summary table's result column
    assert "wrong-token-value" not in result.stdout + result.stderr
