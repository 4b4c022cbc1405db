"""End-to-end fixtures: ``machine-reconciler emulator`` as a subprocess on a free loopback port,
and the CLI run as a subprocess against it, the way a user runs both.

Two ways to get an emulator:

* ``emulator_url``: the worker's one shared ``machine-reconciler emulator`` process, reset
  (``POST /_emulator/reset`` with seed 0 and Fly's default behaviour, the world a fresh
  ``emulator --token TOKEN`` starts with) before each test.  Starting the process costs a second
  or more of imports per test; a reset wipes apps, machines, volumes, faults, the request log,
  rate buckets and external writers, so tests stay independent.
* ``start_emulator``: a process of the test's own, for tests about the process itself (its
  scenario file, its signals) or that need its output.

``copy_examples`` copies the shipped ``desired_state/`` examples with their check intervals
made short (see its docstring); tests about the examples themselves read them verbatim.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import httpx
import pytest

TOKEN = "e2e-token-0123456789"
EmulatorProcess = Callable[..., tuple[str, "subprocess.Popen[bytes]"]]

EXAMPLES = Path(__file__).resolve().parents[2] / "desired_state"
#: Fly's boot and check delays made short (the emulator's ``PATCH /_emulator/behaviour``).
FAST = {"boot_seconds": 0.1, "stop_seconds": 0.05, "checks_pass_seconds": 0.1}
#: The check interval ``copy_examples`` writes: the controller reads a machine's checks at the
#: checks' own interval, at least 1 s (controller/execution/waiting.py ``check_interval``).
E2E_CHECK_INTERVAL = "1s"
_INTERVAL = re.compile(r"\binterval: \d+s\b")


def copy_examples(target: Path) -> Path:
    """Copy the shipped ``desired_state/`` examples to ``target`` with every check ``interval``
    set to :data:`E2E_CHECK_INTERVAL`; returns ``target``.

    The examples' checks run every 15 s and 30 s, and the controller reads a machine's checks at
    that interval (capped at 5 s), one machine after another (max_unavailable 1): about 5 s per
    machine although the emulator passes checks 0.1 s after boot.  With 1 s intervals a rollout
    waits the same way, only shorter.  Nothing else changes, so tests that edit the copy (an
    image, a regions line, a typo) still find the examples' text.
    """
    shutil.copytree(EXAMPLES, target)
    rewritten = 0
    for path in sorted(target.glob("*.yaml")):
        text, count = _INTERVAL.subn(f"interval: {E2E_CHECK_INTERVAL}", path.read_text())
        path.write_text(text)
        rewritten += count
    assert rewritten, "the examples declare no check interval any more: update copy_examples"
    return target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _launch_emulator(
    scenario: Path | None = None, *, ready_within: float = 60.0, log: Path | None = None
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``python -m controller emulator`` and wait until it answers; (url, proc).

    Its output goes to ``proc.stdout`` (a pipe), or to the file ``log`` for a long-lived
    process (a pipe nobody reads would stall it once full).
    """
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
    if log is None:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    else:
        with log.open("ab") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_within
    while True:
        try:
            # A small answer: /_emulator/state of a 10,000-machine scenario takes longer than
            # the poll's timeout to send on a busy machine, so it would never count as ready.
            if httpx.get(f"{url}/_emulator/behaviour", timeout=1).status_code == 200:
                return url, proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:  # still running: end it, or reading its output blocks
                proc.kill()
                proc.wait(10)
            if proc.stdout:
                with proc.stdout:  # closed here: the caller never gets this process
                    output = proc.stdout.read().decode()
            else:
                output = log.read_text(errors="replace") if log else ""
            pytest.fail(f"emulator did not start (rc={proc.poll()}):\n{output}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture
def start_emulator() -> Iterator[EmulatorProcess]:
    """Start an emulator process of the test's own (optionally with a scenario); yields
    ``start(scenario=None, *, ready_within=60.0) -> (url, proc)``."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        scenario: Path | None = None, *, ready_within: float = 60.0
    ) -> tuple[str, subprocess.Popen[bytes]]:
        url, proc = _launch_emulator(scenario, ready_within=ready_within)
        procs.append(proc)
        return url, proc

    yield start
    for proc in procs:
        _stop(proc)


class _SharedEmulator:
    """The worker's emulator process, started on first use (again if it died)."""

    def __init__(self, log: Path) -> None:
        self._log = log
        self._served: tuple[str, subprocess.Popen[bytes]] | None = None

    def fresh(self) -> str:
        """The URL of the process after a reset to a new emulator's world."""
        if self._served is None or self._served[1].poll() is not None:
            if self._served is not None:
                _stop(self._served[1])
            self._served = _launch_emulator(log=self._log)
        url = self._served[0]
        response = httpx.post(
            f"{url}/_emulator/reset", json={"seed": 0, "behaviour": {}}, timeout=10
        )
        response.raise_for_status()
        return url

    def close(self) -> None:
        if self._served is not None:
            _stop(self._served[1])


@pytest.fixture(scope="session")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_SharedEmulator]:
    """One emulator process per pytest worker (see the module docstring)."""
    shared = _SharedEmulator(tmp_path_factory.mktemp("shared-emulator") / "output.log")
    yield shared
    shared.close()


@pytest.fixture
def emulator_url(shared_emulator: _SharedEmulator) -> str:
    """The shared emulator, reset to the world of a fresh ``emulator --token TOKEN``."""
    return shared_emulator.fresh()


class OneRetry(TypedDict):
    """Extra environment of a CLI run (a TypedDict: its keys cannot clash with ``run_cli``'s)."""

    MACHINE_RECONCILER_RETRY_MAX_ATTEMPTS: str


#: The documented setting that bounds a call's tries: 2 for tests that answer every try with a
#: 5xx (one retry still happens and is logged; the others would each sleep at least 1 s).
ONE_RETRY: OneRetry = {"MACHINE_RECONCILER_RETRY_MAX_ATTEMPTS": "2"}


def cli_env(url: str, **env: str) -> dict[str, str]:
    """The environment of a CLI child: ours stripped, the emulator's URL and the e2e token."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("FLY_", "MACHINE_RECONCILER_"))
    }
    environ.update({"FLY_API_TOKEN": TOKEN, "MACHINE_RECONCILER_API_URL": url, **env})
    return environ


def run_cli(
    *args: str, url: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m controller ARGS`` against the emulator at ``url`` with the e2e token."""
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=cli_env(url, **env),
    )


def start_cli(*args: str, url: str) -> subprocess.Popen[str]:
    """Start ``python -m controller ARGS`` (unbuffered, pipes for both streams) to signal it."""
    return subprocess.Popen(
        [sys.executable, "-m", "controller", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(url, PYTHONUNBUFFERED="1"),
    )


def control(url: str, method: str, path: str, json: Any = None) -> Any:
    """Call the emulator's control API."""
    response = httpx.request(method, f"{url}/_emulator{path}", json=json, timeout=10)
    response.raise_for_status()
    return response.json() if response.content else None
