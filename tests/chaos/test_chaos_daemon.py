"""``run`` (the daemon) under generated fault schedules: the same safety rules as ``apply``, the
fleet converges within :data:`CONVERGE_BOUND` of the last fault, and SIGTERM then exits 0
with every lease released.  The daemon's log and ``/metrics`` are checked for secrets too."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, note

from tests.chaos import invariants
from tests.chaos.conftest import EXAMPLES, chaos_settings
from tests.chaos.harness import APP, World, start_daemon, wait_until
from tests.chaos.schedules import EMPTY_LISTS, Fault, Injector, schedules, targets

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

#: The daemon retries a failed app with its own backoff (1 s doubling, full jitter) and every
#: ``interval`` (2 s here); after the last fault it must converge within this many seconds.
CONVERGE_BOUND = 45.0


@chaos_settings(max(1, EXAMPLES // 2))
@given(schedule=schedules, regions=targets)
@example(schedule=EMPTY_LISTS, regions={"iad": 3, "ams": 2})
def test_the_daemon_keeps_every_safety_rule_under_faults(
    world: World, tmp_path: Path, schedule: list[Fault], regions: dict[str, int]
) -> None:
    emulator = world.emulator
    emulator.reset(11)
    world.write(1, {"iad": 2, "ams": 1})
    log = tmp_path / "daemon.log"
    daemon = start_daemon(world.directory, emulator.url, log, "--interval", "2")
    try:
        wait_until(lambda: emulator.converged(1, {"iad": 2, "ams": 1}), 30, "v1 at start")
        before = emulator.state()
        emulator.call("DELETE", "/requests")
        with Injector(emulator, schedule) as injector:
            world.write(2, regions)
            injector.finish()
        note(f"injected: {injector.applied}")
        emulator.call("DELETE", "/faults")
        taken = wait_until(
            lambda: emulator.converged(2, regions), CONVERGE_BOUND, "convergence after faults"
        )
        note(f"converged {taken:.1f}s after the last fault")
        metrics = daemon.get("/metrics").text
        assert daemon.get("/healthz").status_code == 200
        assert daemon.stop(30) == 0
    finally:
        daemon.kill()
    text = log.read_text(encoding="utf-8")
    problems = invariants.check_all(
        emulator.requests(), emulator.state(), before, APP, [text, metrics]
    )
    assert problems == [], "\n".join(problems)
    assert world.plan_is_empty()
