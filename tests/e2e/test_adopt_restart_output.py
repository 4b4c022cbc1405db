"""``adopt`` and ``restart`` as a program drives them (CLI subprocesses against the served
emulator): ``--output json`` is plan's document (validated against the shipped schema) with
``results`` once they acted, and stdout holds nothing else; ``restart`` drains on Ctrl-C and
SIGTERM as ``apply`` does (exit 130 / 143, every lease released, the rest not run)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from controller.planning.render import SCHEMA_PATH
from tests.e2e.conftest import TOKEN, control, run_cli, start_cli
from tests.e2e.test_cli_apply import live, live_leases

pytestmark = pytest.mark.e2e

SCHEMA = json.loads(SCHEMA_PATH.read_text())
FAST = {"boot_seconds": 0.1, "stop_seconds": 0.05, "checks_pass_seconds": 0.1}
SLOW = {"boot_seconds": 1.0, "stop_seconds": 0.2, "checks_pass_seconds": 0.1}
IMAGE = "registry.fly.io/fleet:v1"
APP = """\
app: fleet
groups:
  web:
    regions: {{ams: {machines}}}
    config:
      image: registry.fly.io/fleet:v1
    update: {{max_unavailable: 1, smoke_period: 0}}
"""


def _document(stdout: str) -> dict[str, Any]:
    """stdout is exactly one JSON document, valid against plan's schema."""
    document: dict[str, Any] = json.loads(stdout)
    Draft202012Validator(SCHEMA).validate(document)
    return document


def _fleet(url: str, tmp_path: Path, machines: int) -> Path:
    """``fleet`` with ``machines`` managed machines in ams, applied."""
    directory = tmp_path / "desired"
    directory.mkdir()
    (directory / "fleet.yaml").write_text(APP.format(machines=machines))
    control(url, "POST", "/seed", {"apps": [{"name": "fleet"}]})
    applied = run_cli("apply", str(directory), "--yes", url=url)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return directory


def _restarts(url: str) -> list[dict[str, Any]]:
    return [e for e in control(url, "GET", "/requests") if e["path"].endswith("/restart")]


@pytest.fixture
def url(emulator_url: str) -> str:
    served = emulator_url
    control(served, "PATCH", "/behaviour", FAST)
    return served


# ------------------------------------------------------------------------------ restart


def test_restart_output_json_proposes_then_reports_each_machine(url: str, tmp_path: Path) -> None:
    directory = _fleet(url, tmp_path, 3)
    stopped = sorted(m["id"] for m in live(url, "fleet"))[0]
    api = f"{url}/v1/apps/fleet/machines/{stopped}/stop"
    httpx.post(api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).raise_for_status()
    deadline = time.monotonic() + 10
    while {m["id"]: m["state"] for m in live(url, "fleet")}[stopped] != "stopped":
        assert time.monotonic() < deadline, "the machine did not stop"
        time.sleep(0.05)
    args = ("restart", str(directory), "--app", "fleet", "--output", "json")

    asked = run_cli(*args, url=url)
    assert asked.returncode == 1, "off a terminal it needs --yes"
    assert "pass --yes" in asked.stderr
    assert "↻ restart" in asked.stderr, "the text proposal goes to stderr"
    proposal = _document(asked.stdout)
    assert sorted(r["action"] for r in proposal["machines"]) == ["noop", "restart", "restart"]
    [skipped] = [r for r in proposal["machines"] if r["action"] == "noop"]
    assert (skipped["machine_id"], skipped["reason"]) == (stopped, "stopped: not restarted")
    assert (proposal["summary"]["restart"], proposal["summary"]["noop"]) == (2, 1)
    assert "results" not in proposal
    assert _restarts(url) == []

    ran = run_cli(*args, "--yes", url=url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    document = _document(ran.stdout)
    results = document["results"]
    assert sorted(r["machine_id"] for r in results) == sorted(
        r["machine_id"] for r in document["machines"] if r["action"] == "restart"
    )
    assert {(r["action"], r["outcome"]) for r in results} == {("restart", "ok")}
    assert "Restart summary" in ran.stderr
    assert len(_restarts(url)) == 2


def test_restart_output_json_names_an_app_it_cannot_list(url: str, tmp_path: Path) -> None:
    directory = tmp_path / "desired"
    directory.mkdir()
    (directory / "fleet.yaml").write_text(APP.format(machines=1))
    result = run_cli(
        "restart", str(directory), "--app", "fleet", "--output", "json", "--yes", url=url
    )
    assert result.returncode == 1
    document = _document(result.stdout)
    assert [(e["app"], e["class"]) for e in document["errors"]] == [("fleet", "not_found")]
    assert [(a["app"], a["status"]) for a in document["apps"]] == [("fleet", "failed")]


# ------------------------------------------------------------------------------- adopt


def test_adopt_output_json_proposes_then_reports_each_machine(url: str, tmp_path: Path) -> None:
    directory = tmp_path / "desired"
    directory.mkdir()
    (directory / "fleet.yaml").write_text(APP.format(machines=2))
    seeded = control(
        url,
        "POST",
        "/seed",
        {
            "apps": [{"name": "fleet"}],
            "machines": [
                {"app": "fleet", "region": "ams", "config": {"image": IMAGE}},
                {"app": "fleet", "region": "ams", "config": {"image": "flyio/postgres:16"}},
            ],
        },
    )
    mine, database = (m["id"] for m in seeded["machines"])
    args = ("adopt", str(directory), "--app", "fleet", "--output", "json")

    asked = run_cli(*args, url=url)
    assert asked.returncode == 1
    assert "= adopt" in asked.stderr
    proposal = _document(asked.stdout)
    records = {r["machine_id"]: r for r in proposal["machines"]}
    assert records[mine]["action"] == "adopt"
    assert (records[mine]["slot"], records[mine]["reason"]) == ("web-ams-0", "same config")
    assert records[mine]["current_version"]
    assert records[database]["action"] == "unmanaged"
    assert records[database]["region"] == "ams"
    assert proposal["summary"]["adopt"] == 1
    assert [a["status"] for a in proposal["apps"]] == ["changes"]

    ran = run_cli(*args, "--yes", url=url)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    [result] = _document(ran.stdout)["results"]
    assert (result["machine_id"], result["action"], result["outcome"]) == (mine, "adopt", "ok")
    assert "adopted as web-ams-0" in result["message"]

    again = run_cli(*args, url=url)
    assert again.returncode == 0
    nothing = _document(again.stdout)
    assert nothing["summary"]["adopt"] == 0
    assert nothing["summary"]["text"] == "Nothing to adopt."


# ---------------------------------------------------------------------- restart interrupted


def _start_restart(url: str, directory: Path, *extra: str) -> subprocess.Popen[str]:
    return start_cli("restart", str(directory), "--app", "fleet", "--yes", *extra, url=url)


def _interrupted(url: str, tmp_path: Path, signum: signal.Signals, *extra: str) -> str:
    """Restart 5 machines one at a time, ``signum`` once the first restart was sent; stdout."""
    directory = _fleet(url, tmp_path, 5)
    control(url, "PATCH", "/behaviour", SLOW)
    control(url, "DELETE", "/requests")
    proc = _start_restart(url, directory, *extra)
    deadline = time.monotonic() + 60
    while not _restarts(url):
        assert proc.poll() is None, "restart ended before it was interrupted"
        assert time.monotonic() < deadline, "restart restarted nothing"
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stdout + stderr
    assert "Traceback" not in stderr
    assert len(_restarts(url)) < 5, "the drain started no new restart"
    assert not live_leases(url), "every lease was released"
    return stdout


def test_ctrl_c_drains_a_restart_and_exits_130(url: str, tmp_path: Path) -> None:
    stdout = _interrupted(url, tmp_path, signal.SIGINT, "--grace", "20")
    assert "interrupted: no new machine operation starts" in stdout
    assert "Restart summary (interrupted)" in stdout
    assert "not run" in stdout
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("interrupted: ")
    assert "planned machine change(s) not run" in last
    done = [ln for ln in stdout.splitlines() if ": restart " in ln and "-> ok" in ln]
    assert done, "the restart in flight finished within the grace"


def test_sigterm_drains_a_restart_and_exits_143(url: str, tmp_path: Path) -> None:
    stdout = _interrupted(url, tmp_path, signal.SIGTERM)
    assert "Restart summary (interrupted)" in stdout
