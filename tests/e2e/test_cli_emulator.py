"""``machine-reconciler emulator`` as a user runs it: a subprocess on a loopback port, then the
API client against it, then SIGTERM."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from controller.core.errors import Unauthorized
from controller.flyapi import MachinesClient
from controller.testing import FakeClock
from tests.e2e.conftest import TOKEN, EmulatorProcess

pytestmark = pytest.mark.e2e

SCENARIO = """
behaviour: {boot_seconds: 0.1, rate_limits: false}
fixtures:
  apps: [{name: acme-web}]
  machines:
    - {app: acme-web, region: ams, config: {image: "registry.fly.io/acme-web:v1"},
       metadata: {reconciler/managed: "true", reconciler/slot: web-ams-0}}
    - {app: acme-web, region: iad, config: {image: "registry.fly.io/acme-web:v1"}}
"""


@pytest.fixture
def emulator_process(
    tmp_path: Path, start_emulator: EmulatorProcess
) -> tuple[str, subprocess.Popen[bytes]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    return start_emulator(scenario)


async def test_emulator_command_serves_the_api_to_the_client(
    emulator_process: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """The CLI-started emulator serves the scenario's fleet, enforces --token, stops on SIGTERM."""
    url, proc = emulator_process
    async with httpx.AsyncClient(base_url=url) as http:
        client = MachinesClient(
            http, token=SecretStr(TOKEN), clock=FakeClock(), rng=random.Random(0)
        )
        machines = await client.list_machines("acme-web")
        managed = await client.list_machines("acme-web", metadata={"reconciler/managed": "true"})
        intruder = MachinesClient(
            http, token=SecretStr("not-the-token"), clock=FakeClock(), rng=random.Random(0)
        )
        with pytest.raises(Unauthorized):
            await intruder.list_machines("acme-web")
    assert sorted(m.region for m in machines) == ["ams", "iad"]
    assert [m.metadata["reconciler/slot"] for m in managed] == ["web-ams-0"]

    proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal (the conventional exit status)
    assert proc.wait(15) in (0, -signal.SIGTERM)
    assert proc.stdout is not None
    assert b"Finished server process" in proc.stdout.read()


def test_missing_scenario_file_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    """A user mistake gets a one-line error, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "controller", "emulator", "--scenario", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "scenario file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_commands() -> None:
    """--help names every subcommand and the exit codes."""
    result = subprocess.run(
        [sys.executable, "-m", "controller", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "emulator" in result.stdout
    assert "demo" in result.stdout
    assert "exit codes" in result.stdout
