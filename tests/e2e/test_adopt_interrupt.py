"""Ctrl-C and SIGTERM during ``adopt`` (a CLI subprocess against the served emulator): the
first signal starts no new adoption, lets the one in flight finish within ``--grace``, prints
the interrupted summary and what is left, releases every lease and exits 130 / 143; a second
signal, or the end of the grace, stops the adoption in flight at once (its lease is still
released)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from controller.planning.render import SCHEMA_PATH
from tests.e2e.conftest import control, start_cli
from tests.e2e.test_cli_apply import live, live_leases

pytestmark = pytest.mark.e2e

IMAGE = "registry.fly.io/fleet:v1"
MACHINES = 5
APP = f"""\
app: fleet
groups:
  web:
    regions: {{ams: {MACHINES}}}
    config:
      image: {IMAGE}
"""
#: A started machine restarts when its config is updated: each adoption then takes about 1 s.
SLOW = {"boot_seconds": 1.0, "stop_seconds": 0.2, "checks_pass_seconds": 0.1}
#: An update request the emulator answers after this long (the adoption in flight is stuck).
STUCK_UPDATE = {"method": "POST", "path": r"/machines/[^/]+$", "latency": 30, "count": 100}


@pytest.fixture
def unmanaged(emulator_url: str, tmp_path: Path) -> tuple[str, Path]:
    """``fleet`` declaring 5 slots in ams, and 5 unmanaged machines there running its image."""
    url = emulator_url
    control(url, "PATCH", "/behaviour", SLOW)
    machines = [{"app": "fleet", "region": "ams", "config": {"image": IMAGE}}] * MACHINES
    control(url, "POST", "/seed", {"apps": [{"name": "fleet"}], "machines": machines})
    directory = tmp_path / "desired"
    directory.mkdir()
    (directory / "fleet.yaml").write_text(APP)
    return url, directory


def _start_adopt(url: str, directory: Path, *extra: str) -> subprocess.Popen[str]:
    return start_cli("adopt", str(directory), "--app", "fleet", "--yes", *extra, url=url)


def _wait_for_a_lease(url: str, proc: subprocess.Popen[str]) -> None:
    """Until the first adoption holds its machine's lease (it is in flight)."""
    deadline = time.monotonic() + 60
    while not live_leases(url):
        assert proc.poll() is None, "adopt ended before it was interrupted"
        assert time.monotonic() < deadline, "adopt took no lease"
        time.sleep(0.05)


def _managed(url: str) -> list[dict[str, Any]]:
    return [m for m in live(url, "fleet") if "reconciler/managed" in m["config"]["metadata"]]


def _interrupted(
    proc: subprocess.Popen[str], signum: signal.Signals, *, as_json: bool = False
) -> tuple[str, str]:
    """``proc``'s stdout and stderr once it ended, after checking what every interrupted adopt
    must do: exit 128 + the first signal, no traceback, the summary last (on stderr when
    stdout holds the JSON document)."""
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stdout + stderr
    assert "Traceback" not in stderr
    text = stderr if as_json else stdout
    assert "Adopt summary (interrupted)" in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("interrupted: "), text
    assert "proposed adoption(s) not run" in last
    return stdout, stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_drains_adopt(unmanaged: tuple[str, Path], signum: signal.Signals) -> None:
    url, directory = unmanaged
    proc = _start_adopt(url, directory, "--grace", "20")
    _wait_for_a_lease(url, proc)
    proc.send_signal(signum)
    stdout, _ = _interrupted(proc, signum)
    assert "interrupted: no new machine operation starts" in stdout
    adopted = [ln for ln in stdout.splitlines() if " adopted as web-ams-" in ln]
    assert adopted, "the adoption in flight finished within the grace"
    assert len(_managed(url)) == len(adopted) < MACHINES, "the drain started no new adoption"
    assert f"{len(adopted)} adopted, 0 left alone, 0 failed" in stdout
    assert not live_leases(url), "every lease was released"


def test_the_end_of_the_grace_stops_the_adoption_in_flight(
    unmanaged: tuple[str, Path],
) -> None:
    url, directory = unmanaged
    control(url, "POST", "/faults", STUCK_UPDATE)
    proc = _start_adopt(url, directory, "--grace", "1")
    _wait_for_a_lease(url, proc)
    proc.send_signal(signal.SIGINT)
    began = time.monotonic()
    stdout, _ = _interrupted(proc, signal.SIGINT)
    assert time.monotonic() - began < 20, "the 1 s grace did not wait for the 30 s update"
    assert "interrupted while being adopted (its lease is released" in stdout
    assert "0 adopted, 0 left alone, 0 failed, 5 not run" in stdout
    assert not live_leases(url), "the lease of the adoption cut short was released"


def test_a_second_signal_stops_at_once(unmanaged: tuple[str, Path]) -> None:
    url, directory = unmanaged
    control(url, "POST", "/faults", STUCK_UPDATE)
    proc = _start_adopt(url, directory, "--grace", "60")
    _wait_for_a_lease(url, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    began = time.monotonic()
    stdout, _ = _interrupted(proc, signal.SIGTERM)
    assert time.monotonic() - began < 20, "the second signal did not wait for the 60 s grace"
    assert "interrupted while being adopted" in stdout
    assert not live_leases(url), "leases are released on abort too"


def test_an_adoption_cut_short_after_its_write_is_reported_adopted_in_json(
    unmanaged: tuple[str, Path],
) -> None:
    """The metadata is written but the machine is still booting when the grace ends: it is
    managed now, and ``--output json`` says so (one valid document, ``ok``)."""
    url, directory = unmanaged
    control(url, "PATCH", "/behaviour", {"boot_seconds": 30.0})
    proc = _start_adopt(url, directory, "--grace", "1", "--output", "json")
    _wait_for_a_lease(url, proc)
    deadline = time.monotonic() + 30
    while not _managed(url):  # the update went through; the machine boots for 30 s
        assert time.monotonic() < deadline, "the first adoption wrote nothing"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = _interrupted(proc, signal.SIGINT, as_json=True)
    assert "interrupted before it was seen running" in stderr
    assert "1 adopted, 0 left alone, 0 failed, 4 not run" in stderr
    document = json.loads(stdout)
    Draft202012Validator(json.loads(SCHEMA_PATH.read_text())).validate(document)
    [result] = document["results"]
    [machine] = _managed(url)
    assert (result["machine_id"], result["outcome"]) == (machine["id"], "ok")
    assert not live_leases(url)
