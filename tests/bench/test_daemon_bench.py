"""Benchmark: the daemon's memory with 10,000 machines and the cost of a no-op pass.

DESIGN.md section 11: daemon RSS with 10,000 machines under 200 MB; a no-op pass makes one
list call per app.  100 apps x 100 converged machines are seeded into ``machine-reconciler
emulator`` (a subprocess); ``machine-reconciler run`` (another subprocess) reconciles them until
a full pass is done, twice; then its peak RSS (``VmHWM``) is read from /proc and the
emulator's request log is counted for the second pass.

Run by ``make bench`` only (marker ``bench``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from controller.model.desired import parse_app
from controller.planning.plan import plan, with_launch
from tests.e2e.conftest import TOKEN, EmulatorProcess, _free_port, control, start_emulator

__all__ = ["start_emulator"]

pytestmark = pytest.mark.bench

APPS = 100
PER_APP = 100
TARGET_MB = 200


def app_doc(index: int) -> dict[str, object]:
    return {
        "app": f"fleet-{index:03d}",
        "defaults": {"config": {"image": "registry.fly.io/fleet:v1", "env": {"A": "1"}}},
        "groups": {
            "web": {
                "regions": {"ams": PER_APP // 2, "iad": PER_APP - PER_APP // 2},
                "config": {
                    "services": [
                        {
                            "internal_port": 8080,
                            "protocol": "tcp",
                            "ports": [{"port": 443, "handlers": ["tls", "http"]}],
                        }
                    ]
                },
            }
        },
    }


def write_fleet(tmp: Path) -> tuple[Path, Path]:
    desired = tmp / "desired"
    desired.mkdir()
    machines = []
    for index in range(APPS):
        doc = app_doc(index)
        (desired / f"fleet-{index:03d}.yaml").write_text(json.dumps(doc))  # JSON is YAML
        app = parse_app(doc)
        for n, create in enumerate(plan(app, []).creates):
            machines.append(
                {
                    "app": app.app,
                    "region": create.region,
                    "config": with_launch(create.config, f"seed-{index}-{n}"),
                }
            )
    scenario = tmp / "scenario.json"
    scenario.write_text(
        json.dumps(
            {
                "behaviour": {"org_machine_limit": APPS * PER_APP * 2},
                "fixtures": {
                    "apps": [{"name": f"fleet-{i:03d}"} for i in range(APPS)],
                    "machines": machines,
                },
            }
        )
    )
    return desired, scenario


def metric_sum(text: str, name: str, *, having: str = "") -> float:
    """Sum of every sample of ``name`` (optionally only those whose labels contain ``having``)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and having in line
    )


def passes_done(health: str) -> float:
    """App passes finished so far (reconcile_runs_total counts one per app pass)."""
    text = httpx.get(f"{health}/metrics", timeout=5).text
    return metric_sum(text, "machine_reconciler_reconcile_runs_total")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.timeout(600)
def test_daemon_rss_and_noop_pass_with_10000_machines(
    tmp_path: Path, start_emulator: EmulatorProcess
) -> None:
    """Peak RSS of the daemon over two full passes of 10,000 machines, and calls per no-op pass."""
    desired, scenario = write_fleet(tmp_path)
    url, _ = start_emulator(scenario, ready_within=300)
    assert len(control(url, "GET", "/state")["machines"]) == APPS * PER_APP
    port = _free_port()
    health = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLY_", "MACHINE_RECONCILER_"))}
    env.update(
        {
            "FLY_API_TOKEN": TOKEN,
            "MACHINE_RECONCILER_API_URL": url,
            "MACHINE_RECONCILER_GLOBAL_RATE": "1000",
            "MACHINE_RECONCILER_GLOBAL_BURST": "1000",
        }
    )
    started = time.monotonic()
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller",
            "run",
            str(desired),
            "--interval",
            "3600",
            "--health-bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if passes_done(health) >= APPS:
                    break
            except httpx.TransportError:
                pass
            assert daemon.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, "first pass did not finish"
            time.sleep(0.2)
        first_pass = time.monotonic() - started
        control(url, "DELETE", "/requests")
        daemon.send_signal(signal.SIGHUP)
        while passes_done(health) < 2 * APPS:
            assert time.monotonic() < deadline, "second pass did not finish"
            time.sleep(0.2)
        rss = peak_rss_mb(daemon.pid)
        metrics = httpx.get(f"{health}/metrics", timeout=5).text
        log = control(url, "GET", "/requests")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    lists = [e for e in log if e["method"] == "GET" and e["path"].endswith("/machines")]
    writes = [e for e in log if e["method"] != "GET"]
    print(
        f"\ndaemon with {APPS * PER_APP} machines: first pass (incl. start-up) {first_pass:.1f} s, "
        f"peak RSS {rss:.0f} MB (target < {TARGET_MB} MB); no-op pass: {len(log)} API calls, "
        f"{len(lists)} list calls for {APPS} apps, {len(writes)} writes"
    )
    noops = metric_sum(metrics, "machine_reconciler_actions_total", having='outcome="noop"')
    assert noops == 2 * APPS * PER_APP, "every machine was planned as in sync, twice"
    assert not writes
    assert len(lists) == APPS
    assert rss < TARGET_MB
