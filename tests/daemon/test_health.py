"""``/healthz``, ``/readyz``, ``/metrics`` and the systemd watchdog of an in-process daemon."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from controller.daemon.loop import ReconcileFn
from controller.daemon.telemetry import Telemetry
from controller.execution.executor import Executor
from controller.execution.outcomes import AppResult, MachineResult, Outcome, Phase, Progress
from controller.execution.reconciler import reconcile_app
from controller.model.desired import DesiredApp
from controller.observability.alerts import Condition
from controller.observability.metrics import Metrics
from controller.testing import FakeClock
from tests.daemon.support import IMAGE_V2, RecordingNotifier, app_file, daemon_world


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """A directory with one app, ``web`` (two machines in ams)."""
    directory = tmp_path / "desired"
    directory.mkdir()
    (directory / "web.yaml").write_text(app_file("web"))
    return directory


def stall_after(passes: int) -> StallingReconcile:
    """A reconcile function that works ``passes`` times, then hangs forever."""
    return StallingReconcile(passes)


class StallingReconcile:
    """Injects a stuck loop: the n-th pass never returns and makes no API call."""

    def __init__(self, passes: int) -> None:
        self.passes = passes
        self.calls = 0

    def __call__(self, executor: Executor) -> ReconcileFn:
        async def reconcile(desired: DesiredApp, previous: int | None) -> AppResult:
            self.calls += 1
            if self.calls > self.passes:
                await anyio.sleep_forever()
            return await reconcile_app(desired, executor=executor, previous_managed_count=previous)

        return reconcile


async def test_healthz_turns_unhealthy_when_the_loop_is_stuck(desired: Path) -> None:
    """Healthy while passes finish; 503 once no pass finished for 3 x interval."""
    stall = stall_after(2)
    async with daemon_world(desired, interval=10, reconcile=stall) as w:
        await w.until(lambda: w.daemon.passes >= 2)
        response = await w.health.get("/healthz")
        assert response.status_code == 200
        assert response.json()["status"] == "ok"
        await w.until(lambda: stall.calls >= 3)
        stuck_at = w.clock.monotonic()
        taken = await w.until(lambda: not w.daemon.liveness().ok, within=100)
        response = await w.health.get("/healthz")
        assert response.status_code == 503
        assert response.json()["status"] == "failing"
        last_pass = w.daemon.last_pass_at
        assert last_pass is not None
        assert w.clock.monotonic() - last_pass == pytest.approx(30, abs=0.1)
        assert taken <= 30 + (w.clock.monotonic() - stuck_at)


async def test_a_long_rollout_stays_alive_while_it_makes_progress(desired: Path) -> None:
    """A pass longer than 3 x interval is alive as long as it keeps working."""
    (desired / "web.yaml").write_text(app_file("web", regions={"ams": 6}))
    async with daemon_world(desired, interval=1) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        w.write("web.yaml", app_file("web", regions={"ams": 6}, image=IMAGE_V2))
        seen_unhealthy = False
        while w.images("web") != [IMAGE_V2] * 6:
            seen_unhealthy |= not w.daemon.liveness().ok
            await w.clock.sleep(0.1)
        assert not seen_unhealthy


async def test_readyz_needs_loaded_state_and_an_accepted_token(desired: Path) -> None:
    """Ready after the API answered; a 401 makes it unready and fires the auth alert."""
    async with daemon_world(desired) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        response = await w.health.get("/readyz")
        assert response.status_code == 200, response.text
    async with daemon_world(desired, emulator_token="another-token-entirely") as w:
        await w.until(lambda: w.daemon.passes >= 1)
        response = await w.health.get("/readyz")
        assert response.status_code == 503
        assert any("refused the token" in p for p in response.json()["problems"])
        [alert] = w.alerts.firing()
        assert alert.key.condition is Condition.AUTH


async def test_metrics_move_as_actions_happen(desired: Path) -> None:
    """Counters and gauges follow creates, updates, API calls, conflicts and passes."""
    async with daemon_world(desired, interval=300) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        text = (await w.health.get("/metrics")).text
        assert (
            'machine_reconciler_actions_total{action="create",app="web",outcome="ok"} 2.0' in text
        )
        assert "machine_reconciler_last_successful_pass_timestamp_seconds" in text
        m = w.metrics
        assert (
            m.value("machine_reconciler_actions_total", app="web", action="update", outcome="ok")
            is None
        )
        listed = m.value(
            "machine_reconciler_api_requests_total", endpoint="machines.list", code="200"
        )
        assert listed is not None
        assert listed >= 1
        assert (
            m.value("machine_reconciler_reconcile_runs_total", app="web", result="converged") == 1
        )
        assert m.value("machine_reconciler_drift_machines", app="web") == 0
        first_pass = m.value("machine_reconciler_last_successful_pass_timestamp_seconds")
        assert first_pass == pytest.approx(w.clock.now(), abs=60)

        [machine, _] = w.machines("web")
        w.emulator.external_writer(
            {"kind": "bump_version", "app": "web", "machine_id": machine["id"], "on": "next_update"}
        )
        w.emulator.external_writer(
            {"kind": "hold_lease", "app": "web", "machine_id": machine["id"], "seconds": 3}
        )
        w.write("web.yaml", app_file("web", image=IMAGE_V2))
        await w.until(
            lambda: w.daemon.results["web"].plan is not None and w.images("web") == [IMAGE_V2] * 2
        )
        await w.until(lambda: w.daemon.results["web"].converged and w.daemon.passes >= 1)
        await w.until(
            lambda: (
                m.value(
                    "machine_reconciler_actions_total", app="web", action="update", outcome="ok"
                )
                == 2
            )
        )
        assert m.value("machine_reconciler_conflicts_total", kind="version") == 1
        assert (m.value("machine_reconciler_conflicts_total", kind="lease") or 0) >= 1
        assert m.value("machine_reconciler_lease_wait_seconds_count") == 1
        waited = m.value("machine_reconciler_lease_wait_seconds_sum")
        assert waited is not None
        assert 1 <= waited <= 5
        assert (
            m.value("machine_reconciler_reconcile_runs_total", app="web", result="converged") == 2
        )
        updated = m.value(
            "machine_reconciler_api_requests_total", endpoint="machines.update", code="200"
        )
        assert updated == 2


async def test_watchdog_pings_only_while_the_loop_makes_progress(desired: Path) -> None:
    """WATCHDOG=1 every WATCHDOG_USEC/2 while healthy; silence once the loop is stuck."""
    notifier = RecordingNotifier(watchdog_usec=4_000_000)
    stall = stall_after(1)
    async with daemon_world(desired, interval=5, reconcile=stall, notifier=notifier) as w:
        assert notifier.sent[0] == "READY=1"
        await w.until(lambda: stall.calls >= 2)
        await w.until(lambda: not w.daemon.liveness().ok, within=60)
        pings = notifier.sent.count("WATCHDOG=1")
        assert pings >= 5
        await w.clock.sleep(20)
        assert notifier.sent.count("WATCHDOG=1") == pings, "no pings while stuck"
        assert any(s.startswith("STATUS=running: 1 app(s)") for s in notifier.sent)
    assert "STOPPING=1" in notifier.sent


async def test_a_hung_api_call_does_not_flap_healthz_with_a_short_interval(
    desired: Path,
) -> None:
    """Issue 14: with ``--interval 5`` the limit (15 s) is shorter than one request timeout.
    A list that takes 35 s, within its own request deadline (30 s read + 10 s connect), keeps
    /healthz at 200: a call on the wire within its deadline is waiting, not stuck.  Once it
    answers the pass completes."""
    async with daemon_world(desired, interval=5) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        w.emulator.add_fault({"method": "GET", "path": r"/machines$", "latency": 35.0})
        passes = w.daemon.passes
        w.daemon.request_reload()
        await w.until(lambda: w.daemon.executor.client.calls_in_progress > 0)
        hung_at = w.clock.monotonic()
        seen: list[bool] = []
        while w.daemon.passes == passes:
            seen.append(w.daemon.liveness().ok)
            await w.clock.sleep(0.5)
        assert w.clock.monotonic() - hung_at >= 34.0, "the call really hung past 3 x interval"
        assert all(seen), "healthy throughout the hung call"
        check = w.daemon.liveness()
        assert check.ok


async def test_a_stuck_loop_without_a_call_in_progress_still_fails(desired: Path) -> None:
    """The stretch applies only while an API call is in progress."""
    stall = stall_after(1)
    async with daemon_world(desired, interval=5, reconcile=stall) as w:
        await w.until(lambda: stall.calls >= 2)
        await w.until(lambda: not w.daemon.liveness().ok, within=30)
        assert w.daemon.executor.client.calls_in_progress == 0


def _step(phase: Phase, quiet: float = 0.0, slot: str = "web-ams-0") -> Progress:
    return Progress("web", "m1", slot, "web", "update", phase, quiet=quiet)


def test_an_announced_wait_counts_as_activity_until_it_is_over() -> None:
    """A machine waiting out a check interval or a long-poll is not a stall; a call that
    hangs past the wait it announced is (the activity clock stops where the wait ended)."""
    clock = FakeClock()
    telemetry = Telemetry(Metrics(), clock)
    start = clock.monotonic()
    telemetry.on_event(_step("checking", quiet=15))
    clock.advance(10)
    assert telemetry.last_activity == start + 10
    clock.advance(20)
    assert telemetry.last_activity == start + 15, "a wait past its announcement is silence"


def test_an_early_answer_ends_the_announced_wait() -> None:
    """A long-poll that answers early (the next event) or a finished action drops its
    announcement: a loop stuck afterwards is not covered by it."""
    clock = FakeClock()
    telemetry = Telemetry(Metrics(), clock)
    telemetry.on_event(_step("waiting", quiet=60))
    clock.advance(2)
    telemetry.on_event(_step("checking"))
    clock.advance(30)
    assert telemetry.last_activity == clock.monotonic() - 30
    telemetry.on_event(_step("checking", quiet=60, slot="web-ams-1"))
    telemetry.on_event(MachineResult("web", "m2", "web-ams-1", "web", "ams", "update", Outcome.OK))
    clock.advance(30)
    assert telemetry.last_activity == clock.monotonic() - 30


def test_lease_wait_counts_the_pauses_not_the_queue_for_a_window_slot() -> None:
    """``lease_wait_seconds`` is the time spent waiting for the holder's lease (the announced
    pauses), not the time queued behind other machines for a window slot afterwards."""
    clock = FakeClock()
    metrics = Metrics()
    telemetry = Telemetry(metrics, clock)
    telemetry.on_event(_step("lease_wait", quiet=2.5))
    clock.advance(2.5)
    telemetry.on_event(_step("lease_wait", quiet=1.0))
    clock.advance(1.0 + 40)  # then the window was busy with other machines for 40 s
    telemetry.on_event(_step("leased"))
    assert metrics.value("machine_reconciler_lease_wait_seconds_count") == 1
    assert metrics.value("machine_reconciler_lease_wait_seconds_sum") == 3.5
