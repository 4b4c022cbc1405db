"""``machine-reconciler run`` as an operator runs it: a subprocess against the emulator served
on loopback, driven by files, signals and the emulator's control API, observed through the
emulator's state, the daemon's HTTP endpoints, its JSON logs and a NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.emulator import serve_in_thread
from tests.e2e.conftest import TOKEN, _free_port, control, emulator_url, shared_emulator

# the fixtures, re-exported for this module's tests
__all__ = ["emulator_url", "shared_emulator"]

pytestmark = pytest.mark.e2e

V1 = "registry.fly.io/e2e-web:v1"
V2 = "registry.fly.io/e2e-web:v2"
#: Fly's behaviour with boot and checks made quick; rate limits stay on.
FAST = {"boot_seconds": 0.2, "stop_seconds": 0.1, "checks_pass_seconds": 0.0}


def app_yaml(app: str, image: str = V1, *, count: int = 2, batch: int = 2) -> str:
    """One app, one group with an HTTP check, ``count`` machines in iad."""
    return f"""app: {app}
defaults:
  config:
    image: {image}
    guest: {{cpu_kind: shared, cpus: 1, memory_mb: 256}}
    checks:
      http: {{type: http, port: 8080, path: /healthz, interval: 5s, timeout: 1s}}
groups:
  web:
    regions: {{iad: {count}}}
    update: {{max_unavailable: {batch}, wait_timeout: 60s}}
"""


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` every 20 ms; the seconds it took (fails after ``timeout``)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


@dataclass
class Daemon:
    """A running ``machine-reconciler run`` subprocess."""

    proc: subprocess.Popen[bytes]
    health: str
    log: Path

    def get(self, path: str) -> httpx.Response:
        """GET an endpoint of the daemon's HTTP server."""
        return httpx.get(f"{self.health}{path}", timeout=2)

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        text = self.log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the daemon."""
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the exit code."""
        return self.proc.wait(timeout)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start ``python -m controller run DIR`` against an emulator URL; killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(directory: Path, url: str, *flags: str, env: dict[str, str] | None = None) -> Daemon:
        port = _free_port()
        log = tmp_path / f"daemon-{len(procs)}.log"
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("FLY_", "MACHINE_RECONCILER_", "NOTIFY_SOCKET", "WATCHDOG_"))
        }
        environ.update({"FLY_API_TOKEN": TOKEN, "MACHINE_RECONCILER_API_URL": url, **(env or {})})
        argv = [
            sys.executable,
            "-m",
            "controller",
            "run",
            str(directory),
            "--health-bind",
            f"127.0.0.1:{port}",
            "--log-format",
            "json",
            *flags,
        ]
        with log.open("wb") as sink:
            proc = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=environ)
        procs.append(proc)
        daemon = Daemon(proc, f"http://127.0.0.1:{port}", log)

        def listening() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"daemon exited {proc.returncode}:\n{log.read_text()}")
            try:
                return daemon.get("/healthz").status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_until(listening, 20, "the daemon's health endpoint")
        return daemon

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """An empty desired-state directory."""
    directory = tmp_path / "desired"
    directory.mkdir()
    return directory


@pytest.fixture
def emulator(emulator_url: str) -> str:
    """A served emulator (quick boots and checks) with the apps e2e-web and e2e-jobs."""
    control(emulator_url, "PATCH", "/behaviour", FAST)
    control(emulator_url, "POST", "/seed", {"apps": [{"name": "e2e-web"}, {"name": "e2e-jobs"}]})
    return emulator_url


def machines(url: str, app: str) -> list[dict[str, Any]]:
    """The app's machines that are not destroyed, from the emulator's own state."""
    return [
        m
        for m in control(url, "GET", "/state")["machines"]
        if m["app"] == app and m["state"] != "destroyed"
    ]


def live_leases(url: str) -> list[dict[str, Any]]:
    """Leases still valid now, whoever holds them."""
    now = time.time()
    return [
        m["lease"]
        for m in control(url, "GET", "/state")["machines"]
        if m.get("lease") and m["lease"]["expires_at"] > now
    ]


def converged(url: str, app: str, image: str, count: int) -> Callable[[], bool]:
    """``count`` started machines of ``app`` running ``image``, and no lease held."""

    def check() -> bool:
        found = machines(url, app)
        return (
            len(found) == count
            and all(m["config"]["image"] == image and m["state"] == "started" for m in found)
            and not live_leases(url)
        )

    return check


def test_converges_at_start_and_reports_health(
    desired: Path, emulator: str, start_daemon: Callable[..., Daemon]
) -> None:
    """From an empty app: every slot created on start-up; healthy, ready, metrics counted."""
    (desired / "web.yaml").write_text(app_yaml("e2e-web"))
    daemon = start_daemon(desired, emulator, "--interval", "30")
    wait_until(converged(emulator, "e2e-web", V1, 2), 15, "convergence at start")
    wait_until(lambda: daemon.get("/readyz").status_code == 200, 5, "readiness")
    assert daemon.get("/healthz").json()["status"] == "ok"
    metrics = daemon.get("/metrics").text
    assert (
        'machine_reconciler_actions_total{action="create",app="e2e-web",outcome="ok"} 2.0'
        in metrics
    )
    assert 'machine_reconciler_api_requests_total{code="200",endpoint="machines.create"}' in (
        metrics
    )
    actions = [e for e in daemon.logs() if e.get("event") == "action"]
    assert {(e["action"], e["outcome"]) for e in actions} == {("create", "ok")}
    assert all(e["machine"] and e["slot"] and e["app"] == "e2e-web" for e in actions)
    assert TOKEN not in daemon.log.read_text()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0


def test_a_file_change_converges_within_two_seconds(
    desired: Path, emulator: str, start_daemon: Callable[..., Daemon]
) -> None:
    """A new image in the file is rolled out, healthy and unleased, within 2 s of the write."""
    (desired / "web.yaml").write_text(app_yaml("e2e-web"))
    daemon = start_daemon(desired, emulator, "--interval", "60")
    wait_until(converged(emulator, "e2e-web", V1, 2), 15, "convergence at start")
    (desired / "web.yaml").write_text(app_yaml("e2e-web", V2))
    taken = wait_until(converged(emulator, "e2e-web", V2, 2), 10, "the new image")
    assert taken < 2.0
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0


def test_sighup_reconciles_and_the_interval_corrects_external_changes(
    desired: Path, emulator: str, start_daemon: Callable[..., Daemon]
) -> None:
    """An out-of-band edit is put back on the next interval, and at once after SIGHUP."""
    (desired / "web.yaml").write_text(app_yaml("e2e-web"))
    daemon = start_daemon(desired, emulator, "--interval", "3")
    wait_until(converged(emulator, "e2e-web", V1, 2), 15, "convergence at start")
    victim = machines(emulator, "e2e-web")[0]["id"]

    def hotfix() -> None:
        control(
            emulator,
            "POST",
            "/external-writers",
            {
                "kind": "bump_version",
                "app": "e2e-web",
                "machine_id": victim,
                "patch": {"image": "registry.fly.io/e2e-web:hotfix"},
            },
        )

    hotfix()
    assert not converged(emulator, "e2e-web", V1, 2)()
    taken = wait_until(converged(emulator, "e2e-web", V1, 2), 10, "the next interval")
    assert taken <= 3 * 1.1 + 2, "corrected by the next scheduled pass"

    # SIGHUP: reload and reconcile every app now, long before the next interval.
    wait_until(lambda: daemon.get("/healthz").json()["passes"] >= 2, 10, "a finished pass")
    hotfix()
    daemon.signal(signal.SIGHUP)
    taken = wait_until(converged(emulator, "e2e-web", V1, 2), 10, "SIGHUP's pass")
    assert taken < 2.5
    assert any(e.get("message", "").startswith("SIGHUP") for e in daemon.logs())
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0


@pytest.fixture
def webhook() -> Iterator[tuple[list[dict[str, Any]], str]]:
    """A loopback alert receiver; yields (received bodies, URL)."""
    bodies: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        bodies.append(await request.json())
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hooks/T000/B000/secret", hook, methods=["POST"])])
    with serve_in_thread(app) as base:
        yield bodies, f"{base}/hooks/T000/B000/secret"


def test_a_broken_file_does_not_stop_the_other_app(
    desired: Path,
    emulator: str,
    start_daemon: Callable[..., Daemon],
    webhook: tuple[list[dict[str, Any]], str],
) -> None:
    """A broken file blocks its app only and alerts (log, gauge, webhook) until fixed."""
    bodies, url = webhook
    (desired / "web.yaml").write_text(app_yaml("e2e-web"))
    (desired / "jobs.yaml").write_text(app_yaml("e2e-jobs").replace("memory_mb", "memroy_mb"))
    daemon = start_daemon(desired, emulator, "--interval", "30", "--alert-webhook", url)
    wait_until(converged(emulator, "e2e-web", V1, 2), 15, "e2e-web")
    assert machines(emulator, "e2e-jobs") == []
    errors = [e for e in daemon.logs() if e.get("event") == "load_error"]
    assert errors
    assert "memroy_mb" in errors[0]["message"]
    metrics = daemon.get("/metrics").text
    assert (
        'machine_reconciler_alerts_firing{app="e2e-jobs",condition="bad_desired_state"} 1.0'
        in metrics
    )
    wait_until(lambda: len(bodies) >= 1, 5, "the webhook's firing notice")
    assert bodies[0]["status"] == "firing"
    assert bodies[0]["condition"] == "bad_desired_state"
    assert "[FIRING]" in bodies[0]["text"]
    (desired / "jobs.yaml").write_text(app_yaml("e2e-jobs"))
    wait_until(converged(emulator, "e2e-jobs", V1, 2), 10, "e2e-jobs once fixed")
    wait_until(
        lambda: (
            'alerts_firing{app="e2e-jobs",condition="bad_desired_state"} 0.0'
            in daemon.get("/metrics").text
        ),
        5,
        "the alert to resolve",
    )
    wait_until(lambda: len(bodies) >= 2, 5, "the webhook's resolved notice")
    assert bodies[1]["status"] == "resolved"
    assert "T000/B000" not in daemon.log.read_text(), "the webhook URL is never logged"
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0


def slow_rollout(url: str) -> None:
    """Machines take 1.5 s to boot: a rollout is long enough to be interrupted."""
    control(url, "PATCH", "/behaviour", {"boot_seconds": 1.5})


def test_sigterm_during_a_rollout_releases_every_lease_and_exits_zero(
    desired: Path, emulator: str, start_daemon: Callable[..., Daemon]
) -> None:
    """SIGTERM mid-rollout: no lease left in the emulator, exit 0 within the grace period."""
    (desired / "web.yaml").write_text(app_yaml("e2e-web", count=3, batch=1))
    daemon = start_daemon(desired, emulator, "--interval", "60", "--grace-period", "10")
    wait_until(converged(emulator, "e2e-web", V1, 3), 15, "convergence at start")
    slow_rollout(emulator)
    (desired / "web.yaml").write_text(app_yaml("e2e-web", V2, count=3, batch=1))
    wait_until(lambda: bool(live_leases(emulator)), 5, "an update in flight")
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0
    assert time.monotonic() - sent < 10, "within the grace period"
    assert live_leases(emulator) == []
    images = sorted(m["config"]["image"] for m in machines(emulator, "e2e-web"))
    assert images.count(V1) >= 1, "no new update started after SIGTERM"
    events = [e.get("event") for e in daemon.logs()]
    assert "stopping" in events
    assert "stopped" in events


def test_a_second_signal_exits_at_once(
    desired: Path, emulator: str, start_daemon: Callable[..., Daemon]
) -> None:
    """Two SIGTERMs: the second one exits immediately (128 + 15) despite a long grace."""
    (desired / "web.yaml").write_text(app_yaml("e2e-web", count=1, batch=1))
    daemon = start_daemon(desired, emulator, "--interval", "60", "--grace-period", "60")
    wait_until(converged(emulator, "e2e-web", V1, 1), 15, "convergence at start")
    control(emulator, "PATCH", "/behaviour", {"boot_seconds": 30})
    (desired / "web.yaml").write_text(app_yaml("e2e-web", V2, count=1, batch=1))
    wait_until(lambda: bool(live_leases(emulator)), 5, "an update in flight")
    daemon.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert daemon.proc.poll() is None, "still waiting for the operation in flight"
    sent = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(5) == 128 + signal.SIGTERM
    assert time.monotonic() - sent < 2


def test_notify_socket_ready_watchdog_status_stopping(
    desired: Path, emulator: str, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    """The real process sends READY=1, WATCHDOG=1, STATUS= and STOPPING=1."""
    (desired / "web.yaml").write_text(app_yaml("e2e-web", count=1))
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        daemon = start_daemon(
            desired,
            emulator,
            "--interval",
            "30",
            env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"},
        )
        messages: list[str] = []

        def drain() -> None:
            try:
                while True:
                    messages.extend(sock.recv(4096).decode().splitlines())
            except TimeoutError:
                pass

        def seen(line: str, times: int = 1) -> Callable[[], bool]:
            def check() -> bool:
                drain()
                return messages.count(line) >= times

            return check

        wait_until(seen("READY=1"), 10, "READY=1")
        wait_until(seen("WATCHDOG=1", 3), 5, "watchdog pings")
        assert any(m.startswith("STATUS=running: 1 app(s)") for m in messages)
        daemon.signal(signal.SIGTERM)
        wait_until(seen("STOPPING=1"), 10, "STOPPING=1")
        assert daemon.wait(15) == 0
    assert messages.index("READY=1") < messages.index("STOPPING=1")


def test_no_watch_ignores_file_changes_until_sighup(
    desired: Path, emulator: str, start_daemon: Callable[..., Daemon]
) -> None:
    """--no-watch (the chart's checksum mode): a file change waits for SIGHUP or the interval."""
    (desired / "web.yaml").write_text(app_yaml("e2e-web"))
    daemon = start_daemon(desired, emulator, "--interval", "3600", "--no-watch")
    wait_until(converged(emulator, "e2e-web", V1, 2), 15, "convergence at start")
    (desired / "web.yaml").write_text(app_yaml("e2e-web", V2))
    time.sleep(2.0)  # a watching daemon converges within 2 s (test_file_change_...)
    assert {m["config"]["image"] for m in machines(emulator, "e2e-web")} == {V1}
    daemon.signal(signal.SIGHUP)
    wait_until(converged(emulator, "e2e-web", V2, 2), 15, "convergence after SIGHUP")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
