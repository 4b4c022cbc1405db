"""run_server, the blocking entry point behind ``machine-reconciler emulator``, in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

SCENARIO = """
behaviour: {boot_seconds: 0}
fixtures:
  machines: [{app: web, config: {image: "nginx"}, metadata: {role: web}}]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    port = _free_port()
    code = (
        "from pathlib import Path; from controller.emulator import run_server; "
        f"run_server('127.0.0.1', {port}, scenario=Path({str(scenario)!r}), token='tok', seed=4)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{base_url}/_emulator/behaviour", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_run_server_serves_the_scenario_with_the_token(server: str) -> None:
    """The served emulator applies the scenario and accepts only the configured token."""
    wrong = httpx.get(f"{server}/v1/apps/web/machines", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401
    machines = httpx.get(
        f"{server}/v1/apps/web/machines",
        params={"metadata.role": "web"},
        headers={"Authorization": "Bearer tok"},
    ).json()
    assert [m["state"] for m in machines] == ["started"]
    assert httpx.get(f"{server}/_emulator/behaviour").json()["boot_seconds"] == 0
