"""Ctrl-C during ``apply``: a subprocess gets SIGINT while it creates machines against the served
emulator; it says "interrupted", prints the summary and what is left, releases every lease and
exits 130.  A second SIGINT stops at once, still exit 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import TOKEN, control, copy_examples
from tests.e2e.test_cli_apply import live, live_leases

pytestmark = pytest.mark.e2e

SLOW = {"boot_seconds": 1.0, "stop_seconds": 0.05, "checks_pass_seconds": 0.5}


def _start_apply(url: str, desired: Path, *extra: str) -> subprocess.Popen[str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("FLY_", "MACHINE_RECONCILER_"))
    }
    environ.update(
        {"FLY_API_TOKEN": TOKEN, "MACHINE_RECONCILER_API_URL": url, "PYTHONUNBUFFERED": "1"}
    )
    argv = [sys.executable, "-m", "controller", "apply", str(desired), "--yes", *extra]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ
    )


def _wait_for_machines(url: str, proc: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while len(live(url, "acme-web")) + len(live(url, "acme-jobs")) < count:
        assert proc.poll() is None, "apply ended before it was interrupted"
        assert time.monotonic() < deadline, "apply created nothing"
        time.sleep(0.05)


@pytest.fixture
def served(emulator_url: str, tmp_path: Path) -> tuple[str, Path]:
    url = emulator_url
    control(url, "PATCH", "/behaviour", SLOW)
    control(url, "POST", "/seed", {"apps": [{"name": "acme-web"}, {"name": "acme-jobs"}]})
    return url, copy_examples(tmp_path / "desired")


def test_ctrl_c_drains_prints_summary_and_exits_130(served: tuple[str, Path]) -> None:
    url, desired = served
    proc = _start_apply(url, desired, "--grace", "20")
    _wait_for_machines(url, proc, 1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted: no new machine operation starts" in stdout
    assert "Apply summary (interrupted)" in stdout
    assert "not run" in stdout
    last = stdout.strip().splitlines()[-1]
    assert last.startswith("interrupted: ")
    assert "planned machine change(s) not run" in last
    assert "Traceback" not in stderr
    created = len(live(url, "acme-web")) + len(live(url, "acme-jobs"))
    assert created < 9, "the drain stopped new creates"
    assert not live_leases(url), "every lease was released"
    # the off-terminal lines carry a UTC timestamp and the action's duration
    done = [ln for ln in stdout.splitlines() if ": create " in ln and "-> ok" in ln]
    assert done, stdout
    assert done[0][:4].isdigit()
    assert done[0].split()[0].endswith("Z")
    assert done[0].rstrip().endswith("s)")


def test_a_second_ctrl_c_stops_at_once(served: tuple[str, Path]) -> None:
    url, desired = served
    proc = _start_apply(url, desired, "--grace", "60")
    _wait_for_machines(url, proc, 1)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    began = time.monotonic()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert time.monotonic() - began < 30, "the second Ctrl-C did not wait for the 60 s grace"
    assert "Apply summary (interrupted)" in stdout
    assert not live_leases(url), "leases are released on abort too"
