"""SIGTERM (and Ctrl-C) in the middle of a rollout, for the daemon and for ``apply``.

The daemon's contract is documented (README "The daemon", ``run --help``): no new operation
starts, in-flight ones get ``--grace-period``, every lease is released, exit 0.  ``apply`` has
no documented signal handling beyond Ctrl-C (exit 130): these tests pin what it does.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.chaos import invariants
from tests.chaos.harness import APP, OURS, World, start_daemon, wait_until

pytestmark = pytest.mark.e2e

#: Boots take 1.5 s and the group rolls one machine at a time: a rollout lasts several seconds.
SLOW = {"boot_seconds": 1.5}
GRACE = 10.0


def our_leases(world: World) -> list[str]:
    return [lease["machine_id"] for lease in world.emulator.live_leases() if lease["owner"] == OURS]


@pytest.mark.chaos
def test_sigterm_mid_rollout_stops_the_daemon_within_grace_with_no_lease_left(
    world: World, tmp_path: Path
) -> None:
    emulator = world.emulator
    emulator.reset(31, **SLOW)
    world.write(1, {"iad": 3}, batch=1)
    assert world.apply().returncode == 0
    before = emulator.state()
    log = tmp_path / "daemon.log"
    daemon = start_daemon(
        world.directory, emulator.url, log, "--interval", "60", "--grace-period", str(GRACE)
    )
    try:
        world.write(2, {"iad": 3}, batch=1)
        wait_until(lambda: bool(our_leases(world)), 15, "an update in flight")
        sent = time.monotonic()
        assert daemon.stop(GRACE + 15) == 0
        taken = time.monotonic() - sent
    finally:
        daemon.kill()
    assert taken <= GRACE + 2, f"exited {taken:.1f}s after SIGTERM"
    assert our_leases(world) == [], "every lease released"
    state = emulator.state()
    log_entries = emulator.requests()
    problems = [
        *invariants.writes_carry_nonce_and_version(log_entries),
        *invariants.one_machine_per_slot(state, APP),
        *invariants.unmanaged_untouched(state, before),
        *invariants.no_secret_in([log.read_text()]),
    ]
    assert problems == [], "\n".join(problems)
    images = [m["config"]["image"] for m in emulator.machines() if m["config"]["metadata"]]
    assert any(i.endswith(":v1") for i in images), "no new update started after SIGTERM"


@pytest.mark.parametrize(
    ("signum", "code"),
    [pytest.param(signal.SIGINT, 130, marks=pytest.mark.chaos), (signal.SIGTERM, 143)],
)
def test_a_signal_mid_rollout_stops_apply_and_releases_its_leases(
    world: World, signum: int, code: int
) -> None:
    emulator = world.emulator
    emulator.reset(32, **SLOW)
    world.write(1, {"iad": 3}, batch=1)
    assert world.apply().returncode == 0
    world.write(2, {"iad": 3}, batch=1)
    proc = world.start("apply", str(world.directory), "--yes")
    try:
        wait_until(lambda: bool(our_leases(world)), 15, "an update in flight")
        sent = time.monotonic()
        proc.send_signal(signum)
        returncode = proc.wait(GRACE + 15)
        taken = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
        output, _ = proc.communicate()
    assert returncode == code, output
    assert taken <= GRACE
    assert our_leases(world) == [], "every lease released"
    assert world.apply().returncode == 0, "the next apply finishes the rollout"
    assert emulator.converged(2, {"iad": 3})
