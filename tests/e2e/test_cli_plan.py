"""``validate`` and ``plan`` as a user runs them: subprocesses against the served emulator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import EXAMPLES, ONE_RETRY, control, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """A copy of the shipped example directory, verbatim (nothing here applies it)."""
    target = tmp_path / "desired"
    shutil.copytree(EXAMPLES, target)
    return target


def test_validate_accepts_the_shipped_examples(desired: Path) -> None:
    """The examples in desired_state/ are valid: exit 0."""
    result = run_cli("validate", str(desired), url="http://127.0.0.1:9")
    assert result.returncode == 0, result.stderr
    assert "ok: 2 app(s)" in result.stdout


def test_validate_names_file_line_column_and_field(desired: Path) -> None:
    """A typo is reported as file:line:col: field: message, exit 1, no traceback."""
    broken = desired / "acme-jobs.yaml"
    broken.write_text(broken.read_text().replace("memory_mb: 2048", "memroy_mb: 2048"))
    result = run_cli("validate", str(desired), url="http://127.0.0.1:9")
    assert result.returncode == 1
    assert f"{broken}:" in result.stderr
    assert "memroy_mb" in result.stderr
    assert "Traceback" not in result.stderr
    line = next(ln for ln in result.stderr.splitlines() if "memroy_mb" in ln)
    _, line_no, col, *_ = line.split(":")
    assert int(line_no) > 1
    assert int(col) >= 1


def test_plan_against_empty_apps_shows_creates_and_exit_2(desired: Path, emulator_url: str) -> None:
    """With no machines live, plan lists creates; --detailed-exitcode gives 2; only reads."""
    url = emulator_url
    control(url, "POST", "/seed", {"apps": [{"name": "acme-web"}, {"name": "acme-jobs"}]})
    result = run_cli("plan", str(desired), "--detailed-exitcode", url=url)
    assert result.returncode == 2, result.stderr
    assert "+ create web-ams-0" in result.stdout
    assert "Plan: 9 to create, 0 to update, 0 to destroy." in result.stdout
    methods = {entry["method"] for entry in control(url, "GET", "/requests")}
    assert methods == {"GET"}, "plan never writes"

    as_json = run_cli("plan", str(desired), "--output", "json", "--app", "acme-jobs", url=url)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["summary"]["create"] == 3
    assert {r["app"] for r in document["machines"]} == {"acme-jobs"}
    assert {r["action"] for r in document["machines"]} == {"create"}
    assert "redis://" not in as_json.stdout, "env values are sensitive"


def test_plan_with_a_missing_token_is_one_line(desired: Path) -> None:
    """No token: one clear line, exit 1."""
    result = run_cli("plan", str(desired), url="http://127.0.0.1:9", FLY_API_TOKEN="")
    assert result.returncode == 1
    assert "token" in result.stderr
    assert "Traceback" not in result.stderr


def test_plan_embedded_needs_no_token(desired: Path) -> None:
    """--embedded plans against the in-process emulator seeded with a drifted fleet."""
    result = run_cli(
        "plan",
        str(desired),
        "--embedded",
        "--detailed-exitcode",
        url="http://127.0.0.1:9",
        FLY_API_TOKEN="",
    )
    assert result.returncode == 2, result.stderr
    assert "~ update" in result.stdout
    assert "unmanaged machines" in result.stdout


def test_plan_errors_never_print_an_echoed_secret(desired: Path, emulator_url: str) -> None:
    """A list failure whose body echoes an env value prints the error with the value masked."""
    url = emulator_url
    secret = "redis://:hunter2-queue-password@queue.internal:6379/0"
    control(url, "POST", "/seed", {"apps": [{"name": "acme-jobs"}]})
    control(
        url,
        "POST",
        "/faults",
        {
            "method": "GET",
            "path": "/machines$",
            "count": 10,
            "status": 500,
            "body": {"error": f"leaked {secret}"},
        },
    )
    result = run_cli(
        "plan", str(desired), "--app", "acme-jobs", url=url, ACME_QUEUE_URL=secret, **ONE_RETRY
    )
    assert result.returncode == 1
    assert "acme-jobs" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
