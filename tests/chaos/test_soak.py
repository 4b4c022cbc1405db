"""``make soak``: the daemon against 1,000 machines with light faults, for ``SOAK_SECONDS``
(default 600).  Resident memory and open file descriptors stay flat, no task leaks (the thread
count is flat too), and a no-op pass costs one list per app.  Not part of ``make test``."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

from tests.chaos.harness import APP, Emulator, desired_yaml, start_daemon, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
APPS = 10
PER_APP = 100
INTERVAL = 5.0


def proc_stats(pid: int) -> tuple[int, int, int]:
    """(RSS in kB, open fds, threads) of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields["VmRSS"].split()[0])
    threads = int(fields["Threads"])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


def test_daemon_soak_with_light_faults(emulator: Emulator, tmp_path: Path) -> None:
    directory = tmp_path / "desired"
    directory.mkdir()
    emulator.call(
        "POST",
        "/reset",
        {
            "seed": 51,
            "behaviour": {
                "boot_seconds": 0.0,
                "checks_pass_seconds": 0.0,
                "rate_limits": False,
                "org_machine_limit": None,
            },
        },
    )
    names = [f"{APP}-{i}" for i in range(APPS)]
    emulator.call("POST", "/seed", {"apps": [{"name": n} for n in names]})
    for name in names:
        text = desired_yaml(1, {"iad": PER_APP // 2, "ams": PER_APP - PER_APP // 2})
        (directory / f"{name}.yaml").write_text(text.replace(f"app: {APP}", f"app: {name}", 1))
    daemon = start_daemon(
        directory, emulator.url, tmp_path / "soak.log", "--interval", str(INTERVAL)
    )
    try:

        def live() -> int:
            return sum(1 for m in emulator.state()["machines"] if m["state"] == "started")

        taken = wait_until(lambda: live() == APPS * PER_APP, 900, "1,000 machines")
        print(f"converged 1,000 machines in {taken:.0f}s")
        wait_until(lambda: not emulator.live_leases(), 120, "every lease released")
        # A no-op pass: one list per app and nothing else.
        time.sleep(INTERVAL * 1.2 + 1)
        emulator.call("DELETE", "/requests")
        window = INTERVAL * 2.5
        time.sleep(window)
        log = emulator.requests()
        lists = [e for e in log if e["method"] == "GET" and e["path"].endswith("/machines")]
        print(f"no-op passes: {len(log)} requests, {len(lists)} lists for {APPS} apps")
        assert len(log) == len(lists), "a no-op pass lists each app, nothing more"
        # Each app runs on its own schedule, so in a 2.5-interval window an app passes two or
        # three times: at least once, and never more than one list per pass.
        for name in names:
            count = sum(e["path"] == f"/v1/apps/{name}/machines" for e in lists)
            assert 1 <= count <= math.ceil(window / INTERVAL), (name, count)

        # Light faults for the rest of the soak: 2 % of calls get a 503, some are slow.
        emulator.call("POST", "/faults", {"path": ".*", "status": 503, "probability": 0.02})
        emulator.call("POST", "/faults", {"path": ".*", "latency": 0.5, "probability": 0.02})
        samples = [proc_stats(daemon.proc.pid)]
        end = time.monotonic() + SECONDS
        while time.monotonic() < end:
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            samples.append(proc_stats(daemon.proc.pid))
            assert daemon.get("/healthz").status_code == 200
        first = samples[min(1, len(samples) - 1)]
        peak = tuple(max(s[i] for s in samples[1:] or samples) for i in range(3))
        print(
            f"soak {SECONDS:.0f}s: RSS {samples[0][0]} -> {samples[-1][0]} kB "
            f"(max {max(s[0] for s in samples)}), fds {samples[0][1]} -> {samples[-1][1]}, "
            f"threads {samples[0][2]} -> {samples[-1][2]}"
        )
        assert peak[0] <= first[0] * 1.15 + 10_000, "RSS flat (within 15 % + 10 MB)"
        assert peak[1] <= first[1] + 5, "open file descriptors flat"
        assert peak[2] <= first[2] + 2, "no thread leak"
        emulator.call("DELETE", "/faults")
        assert daemon.stop(60) == 0
    finally:
        daemon.kill()
    assert not emulator.live_leases(), "no lease left"
