"""End-to-end fixtures: ``machine-reconciler emulator`` as a subprocess on a free loopback port,
and the CLI run as a subprocess against it, the way a user runs both."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

TOKEN = "e2e-token-0123456789"
EmulatorProcess = Callable[..., tuple[str, "subprocess.Popen[bytes]"]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def start_emulator() -> Iterator[EmulatorProcess]:
    """Start ``python -m controller emulator`` (optionally with a scenario); yields (url, proc)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        scenario: Path | None = None, *, ready_within: float = 60.0
    ) -> tuple[str, subprocess.Popen[bytes]]:
        port = _free_port()
        argv = [
            sys.executable,
            "-m",
            "controller",
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--token",
            TOKEN,
        ]
        if scenario is not None:
            argv += ["--scenario", str(scenario)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + ready_within
        while True:
            try:
                if httpx.get(f"{url}/_emulator/state", timeout=1).status_code == 200:
                    return url, proc
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:  # still running: end it, or reading its output blocks
                    proc.kill()
                    proc.wait(10)
                output = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"emulator did not start (rc={proc.poll()}):\n{output}")
            time.sleep(0.05)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def run_cli(
    *args: str, url: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m controller ARGS`` against the emulator at ``url`` with the e2e token."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("FLY_", "MACHINE_RECONCILER_"))
    }
    environ.update({"FLY_API_TOKEN": TOKEN, "MACHINE_RECONCILER_API_URL": url, **env})
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=environ,
    )


def control(url: str, method: str, path: str, json: Any = None) -> Any:
    """Call the emulator's control API."""
    response = httpx.request(method, f"{url}/_emulator{path}", json=json, timeout=10)
    response.raise_for_status()
    return response.json() if response.content else None
