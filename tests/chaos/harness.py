"""The chaos harness: a served emulator, the CLI as real subprocesses, a desired-state directory.

Everything here is the way an operator runs the tool: ``machine-reconciler emulator`` on a free
loopback port, ``apply`` and ``run`` as child processes (so ``kill -9`` and ``SIGTERM`` are
real), with timings compressed through the documented settings only (a 2 s request timeout,
a 0.25 s retry base) and Fly's boot and check delays made short in the emulator.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from controller.emulator.ids import token_identity
from tests.e2e.conftest import TOKEN, _free_port

APP = "chaos-web"
#: An env value the masking must keep out of every output, log line and metric.
SECRET = "chaos-secret-value-7f3a9c"
OURS = token_identity(TOKEN)
#: Fly's behaviour with boot and checks made quick; rate limits off (429s come from faults).
FAST = {
    "boot_seconds": 0.2,
    "stop_seconds": 0.1,
    "destroy_seconds": 0.1,
    "checks_pass_seconds": 0.0,
    "rate_limits": False,
}
#: Client settings for chaos runs: short timeouts so "slow" faults sit near them.
REQUEST_TIMEOUT = 2.0
CLIENT_ENV = {
    "MACHINE_RECONCILER_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
    "MACHINE_RECONCILER_CONNECT_TIMEOUT": "1",  # loopback: a connection is there at once or never
    "MACHINE_RECONCILER_RETRY_BASE_DELAY": "0.25",
    "MACHINE_RECONCILER_RETRY_MAX_DELAY": "2",
}
#: The group's wait_timeout: how long an update waits for its machine to be healthy.
WAIT_TIMEOUT = 60


def image(version: int) -> str:
    return f"registry.fly.io/{APP}:v{version}"


def desired_yaml(version: int, regions: dict[str, int], *, batch: int = 2) -> str:
    """The app's desired state: one group, an HTTP check, a secret env value."""
    region_text = ", ".join(f"{r}: {n}" for r, n in sorted(regions.items()))
    return f"""app: {APP}
defaults:
  config:
    image: {image(version)}
    guest: {{cpu_kind: shared, cpus: 1, memory_mb: 256}}
    env: {{SECRET_KEY: "{SECRET}", LOG_LEVEL: info}}
    checks:
      http: {{type: http, port: 8080, path: /healthz, interval: 5s, timeout: 1s}}
groups:
  web:
    regions: {{{region_text}}}
    update: {{max_unavailable: {batch}, wait_timeout: {WAIT_TIMEOUT}s}}
"""


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` every 50 ms; the seconds it took (AssertionError after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def child_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a CLI child: ours stripped, the emulator's URL and token added."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FLY_", "MACHINE_RECONCILER_", "NOTIFY_SOCKET", "WATCHDOG_"))
    }
    environ.update({"FLY_API_TOKEN": TOKEN, "MACHINE_RECONCILER_API_URL": url, **extra})
    return environ


def release_failed(log: list[dict[str, Any]], machine_id: str) -> bool:
    """The last release of this machine's lease was answered by a fault (or never answered)."""
    releases = [
        e
        for e in log
        if e["method"] == "DELETE" and e["path"].endswith(f"/machines/{machine_id}/lease")
    ]
    if not releases:
        return False
    last = releases[-1]
    return (
        last["fault"] is not None or last["dropped"] is not None or (last["status"] or 500) >= 500
    )


def acquire_lost(log: list[dict[str, Any]], machine_id: str) -> bool:
    """The last lease request on this machine that the API handled without refusing it (an
    acquisition or a refresh) never got its answer back (dropped, or delayed past the client's
    timeout): the lease it made is ours but unknown to us, and expires by its TTL (the
    executor never clears a lease it cannot prove it holds)."""
    handled = [
        e
        for e in log
        if e["method"] == "POST"
        and e["path"].endswith(f"/machines/{machine_id}/lease")
        and e.get("audit") is not None
        and (e["status"] is None or e["status"] < 300)
    ]
    return bool(handled) and (
        handled[-1]["fault"] is not None or handled[-1]["dropped"] is not None
    )


def lease_left_to_expire(log: list[dict[str, Any]], machine_id: str) -> bool:
    """A lease of ours on this machine may outlive the run without a bug: its release met a
    fault, or the answer to the request that made it was lost."""
    return release_failed(log, machine_id) or acquire_lost(log, machine_id)


class Emulator:
    """``python -m controller emulator`` on a free loopback port, and its control API."""

    def __init__(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "controller", "emulator", "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--token", TOKEN]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.http = httpx.Client(base_url=f"{self.url}/_emulator", timeout=10)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"emulator exited {self.proc.returncode}")
            try:
                return self.http.get("/state").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, 20, "the emulator")

    def close(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def reset(self, seed: int, **behaviour: Any) -> None:
        """A fresh world: the app, one unmanaged machine in iad, Fly's behaviour made quick."""
        self.call("POST", "/reset", {"seed": seed, "behaviour": {**FAST, **behaviour}})
        self.call(
            "POST",
            "/seed",
            {
                "apps": [{"name": APP}],
                "machines": [
                    {
                        "app": APP,
                        "region": "iad",
                        "config": {"image": "registry.fly.io/someone-elses:1"},
                    }
                ],
            },
        )

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/state")
        return result

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("GET", "/requests")
        return result

    def machines(self) -> list[dict[str, Any]]:
        """The app's machines that are not destroyed."""
        return [
            m for m in self.state()["machines"] if m["app"] == APP and m["state"] != "destroyed"
        ]

    def live_leases(self) -> list[dict[str, Any]]:
        """Leases valid now (by wall time, the served emulator's clock), whoever holds them."""
        now = time.time()
        return [
            m["lease"] | {"machine_id": m["id"]}
            for m in self.state()["machines"]
            if m.get("lease") and m["lease"]["expires_at"] > now
        ]

    def converged(
        self,
        version: int,
        regions: dict[str, int],
        *,
        orphans: frozenset[str] | None = None,
    ) -> bool:
        """Exactly the desired slots, each started on the desired image, no lease of ours held
        (but the ``orphans``: machines whose lease a killed run left to expire by its TTL, or
        whose release met a fault; None: every machine whose lease may be left to expire,
        :func:`lease_left_to_expire`)."""
        if orphans is None:
            log = self.requests()
            orphans = frozenset(
                m["id"] for m in self.machines() if lease_left_to_expire(log, m["id"])
            )
        managed = [m for m in self.machines() if m["config"]["metadata"].get("reconciler/managed")]
        wanted = sum(regions.values())
        by_region = dict.fromkeys(regions, 0)
        for m in managed:
            by_region[m["region"]] = by_region.get(m["region"], 0) + 1
        return (
            len(managed) == wanted
            and by_region == regions
            and all(m["config"]["image"] == image(version) for m in managed)
            and all(m["state"] == "started" for m in managed)
            and not [
                lease
                for lease in self.live_leases()
                if lease["owner"] == OURS and lease["machine_id"] not in orphans
            ]
        )


@dataclass
class Run:
    """A finished (or killed) CLI run: exit code, output, wall seconds."""

    argv: list[str]
    returncode: int
    output: str
    seconds: float


@dataclass
class World:
    """One emulator and one desired-state directory, reused across hypothesis examples."""

    emulator: Emulator
    directory: Path
    outputs: list[str] = field(default_factory=list)

    def write(self, version: int, regions: dict[str, int], *, batch: int = 2) -> None:
        (self.directory / f"{APP}.yaml").write_text(desired_yaml(version, regions, batch=batch))

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start ``python -m controller ARGS`` (output to a pipe, merged)."""
        return subprocess.Popen(
            [sys.executable, "-m", "controller", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env(self.emulator.url, **CLIENT_ENV, **env),
        )

    def run(self, *args: str, timeout: float = 120, **env: str) -> Run:
        """Run a CLI command to completion; its output is kept for the secrets check."""
        started = time.monotonic()
        proc = self.start(*args, **env)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            raise AssertionError(f"{args} did not finish within {timeout}s:\n{output}") from None
        self.outputs.append(output)
        return Run(list(args), proc.returncode, output, time.monotonic() - started)

    def apply(self, *flags: str, timeout: float = 120, **env: str) -> Run:
        return self.run("apply", str(self.directory), "--yes", *flags, timeout=timeout, **env)

    def plan_is_empty(self) -> bool:
        result = self.run("plan", str(self.directory), "--detailed-exitcode")
        return result.returncode == 0


@contextmanager
def served_emulator() -> Iterator[Emulator]:
    emulator = Emulator()
    try:
        yield emulator
    finally:
        emulator.close()


@dataclass
class DaemonProcess:
    """A running ``machine-reconciler run``; JSON logs go to a file."""

    proc: subprocess.Popen[bytes]
    health: str
    log: Path

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.health}{path}", timeout=2)

    def logs(self) -> list[dict[str, Any]]:
        text = self.log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def start_daemon(
    directory: Path, url: str, log: Path, *flags: str, env: dict[str, str] | None = None
) -> DaemonProcess:
    """Start ``run DIR`` against ``url`` with the chaos client settings; wait for /healthz."""
    port = _free_port()
    argv = [sys.executable, "-m", "controller", "run", str(directory)]
    argv += ["--health-bind", f"127.0.0.1:{port}", "--log-format", "json", *flags]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=child_env(url, **CLIENT_ENV, **(env or {})),
        )
    daemon = DaemonProcess(proc, f"http://127.0.0.1:{port}", log)

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}:\n{log.read_text()}")
        try:
            return daemon.get("/healthz").status_code in (200, 503)
        except httpx.TransportError:
            return False

    wait_until(listening, 20, "the daemon's health endpoint")
    return daemon
