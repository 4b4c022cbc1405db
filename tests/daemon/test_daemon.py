"""The daemon in-process against the emulator, on virtual time: passes, reloads, backoff,
requeues, sharding and the graceful stop."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from controller.daemon.scheduling import in_shard
from controller.execution.outcomes import AppResult, Outcome
from controller.observability.alerts import Condition
from tests.daemon.support import FAST, IMAGE_V1, IMAGE_V2, app_file, daemon_world


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """An empty desired-state directory."""
    directory = tmp_path / "desired"
    directory.mkdir()
    return directory


async def test_converges_at_start(desired: Path) -> None:
    """The first pass runs right after start-up: every slot created, no lease left."""
    (desired / "web.yaml").write_text(app_file("web", regions={"ams": 2, "iad": 1}))
    async with daemon_world(desired) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        assert len(w.machines("web")) == 3
        assert w.images("web") == [IMAGE_V1] * 3
        assert w.daemon.results["web"].converged
        assert w.leases() == []
        assert w.daemon.readiness().ok


async def test_a_file_change_reconciles_within_two_seconds(desired: Path) -> None:
    """Editing a file is noticed (poll + debounce) and its app reconciled at once."""
    (desired / "web.yaml").write_text(app_file("web"))
    async with daemon_world(desired, interval=300) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        w.write("web.yaml", app_file("web", image=IMAGE_V2))
        started = await w.until(lambda: bool(w.requests("POST", "/machines/")))
        assert started <= 1.0, "the change is picked up within poll + debounce"
        taken = started + await w.until(lambda: w.images("web") == [IMAGE_V2] * 2)
        assert taken < 10.0, "long before the 300 s interval"
        assert w.daemon.results["web"].converged


async def test_sighup_reloads_and_reconciles_every_app(desired: Path) -> None:
    """request_reload (SIGHUP) corrects drift at once, without waiting for the interval."""
    (desired / "web.yaml").write_text(app_file("web"))
    async with daemon_world(desired, interval=300) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        [machine, _] = w.machines("web")
        w.emulator.external_writer(
            {"kind": "bump_version", "app": "web", "machine_id": machine["id"]}
        )
        w.daemon.request_reload()
        taken = await w.until(
            lambda: all(
                "EMULATOR_EXTERNAL_BUMP" not in (m["config"].get("env") or {})
                for m in w.machines("web")
            )
        )
        assert taken < 10.0


async def test_an_external_change_is_corrected_on_the_next_interval(desired: Path) -> None:
    """Someone edits a machine out of band: the next scheduled pass puts it back."""
    (desired / "web.yaml").write_text(app_file("web"))
    async with daemon_world(desired, interval=20) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        [machine, _] = w.machines("web")
        w.emulator.external_writer(
            {
                "kind": "bump_version",
                "app": "web",
                "machine_id": machine["id"],
                "patch": {"image": "registry.fly.io/web:hotfix"},
            }
        )
        assert "registry.fly.io/web:hotfix" in w.images("web")
        taken = await w.until(lambda: w.images("web") == [IMAGE_V1] * 2)
        assert 10.0 <= taken <= 20.0 + 5.0, "corrected by the next pass, one interval later"
        await w.until(lambda: w.daemon.passes >= 2)


async def test_a_broken_file_blocks_only_its_own_app(desired: Path) -> None:
    """A second app's invalid file alerts at once; the first app still converges."""
    (desired / "web.yaml").write_text(app_file("web"))
    (desired / "api.yaml").write_text(app_file("api").replace("memory_mb", "memroy_mb"))
    async with daemon_world(desired, apps=("web", "api")) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        assert w.daemon.results["web"].converged
        assert "api" not in w.daemon.apps
        assert w.machines("api") == []
        [alert] = w.alerts.firing()
        assert alert.key.condition is Condition.BAD_DESIRED_STATE
        assert alert.key.app == "api"
        assert "memroy_mb" in alert.message
        w.write("api.yaml", app_file("api"))
        await w.until(lambda: len(w.machines("api")) == 2 and "api" in w.daemon.results)
        await w.until(lambda: w.daemon.results["api"].converged)
        assert w.alerts.firing() == []
        assert w.sink.kinds(Condition.BAD_DESIRED_STATE) == ["firing", "resolved"]


async def test_a_failing_app_backs_off_alone(desired: Path) -> None:
    """An app the API does not know backs off and alerts; the other app keeps every pass."""
    (desired / "web.yaml").write_text(app_file("web"))
    (desired / "ghost.yaml").write_text(app_file("ghost"))
    async with daemon_world(desired, apps=("web",), interval=5) as w:
        await w.until(lambda: w.daemon.queue.failures("ghost") >= 4 and w.daemon.passes >= 3)
        assert w.daemon.results["web"].converged
        assert w.daemon.results["ghost"].failed
        [alert] = w.alerts.firing()
        assert (alert.key.app, alert.key.condition) == ("ghost", Condition.API_ERROR)
        runs = w.metrics.value(
            "machine_reconciler_reconcile_runs_total", app="web", result="converged"
        )
        assert runs == w.daemon.passes, "web ran once per pass while ghost backed off"
        delays = [w.daemon.queue.held_until("ghost")]
        assert delays[0] is not None


async def test_a_held_lease_requeues_the_app_after_its_expiry(desired: Path) -> None:
    """A lease held past lease_wait requeues the app for its expiry (not a failure)."""
    (desired / "web.yaml").write_text(app_file("web", regions={"ams": 1}))
    async with daemon_world(desired, interval=300) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        [machine] = w.machines("web")
        w.emulator.external_writer(
            {"kind": "hold_lease", "app": "web", "machine_id": machine["id"], "seconds": 25}
        )
        w.write("web.yaml", app_file("web", regions={"ams": 1}, image=IMAGE_V2))
        await w.until(lambda: w.daemon.results["web"].lease_blocked)
        result: AppResult = w.daemon.results["web"]
        assert result.by_outcome(Outcome.LEASE_HELD)
        assert w.daemon.queue.failures("web") == 0, "a held lease is not a failure"
        assert w.daemon.queue.held_until("web") is not None
        taken = await w.until(lambda: w.daemon.results["web"].converged, within=60)
        assert w.images("web") == [IMAGE_V2]
        assert taken < 30, "requeued for the lease's expiry, not the 300 s interval"


async def test_only_the_apps_of_this_shard_are_reconciled(desired: Path) -> None:
    """shard 1 of 2 owns one of these two apps; the other is never touched."""
    names = ("acme-web", "acme-jobs")
    owned = [n for n in names if in_shard(n, 1, 2)]
    assert len(owned) == 1, "the two names fall into different shards"
    for name in names:
        (desired / f"{name}.yaml").write_text(app_file(name))
    async with daemon_world(desired, apps=names, shard_index=1, shard_count=2) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        assert set(w.daemon.apps) == set(owned)
        for name in names:
            assert len(w.machines(name)) == (2 if name in owned else 0)


async def test_a_removed_file_stops_its_app(desired: Path) -> None:
    """Deleting an app's file: it is no longer reconciled (its machines are left alone)."""
    (desired / "web.yaml").write_text(app_file("web"))
    (desired / "api.yaml").write_text(app_file("api"))
    async with daemon_world(desired, apps=("web", "api")) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        assert w.metrics.value("machine_reconciler_drift_machines", app="api") == 0
        (desired / "api.yaml").unlink()
        await w.until(lambda: "api" not in w.daemon.apps)
        assert len(w.machines("api")) == 2
        assert w.metrics.value("machine_reconciler_drift_machines", app="api") is None


async def test_stop_lets_the_operation_in_flight_finish_and_starts_no_other(
    desired: Path,
) -> None:
    """Stop mid-rollout: the update in flight finishes, no other starts, no lease left."""
    (desired / "web.yaml").write_text(app_file("web", regions={"ams": 3}))
    async with daemon_world(desired, interval=300, grace_period=30) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        w.write("web.yaml", app_file("web", regions={"ams": 3}, image=IMAGE_V2))
        await w.until(lambda: bool(w.leases()))
        w.daemon.request_stop()
        stopped_at = w.clock.monotonic()
        await w.until(lambda: not any(True for _ in w.daemon.in_flight()))
        assert w.clock.monotonic() - stopped_at < 10
        assert w.leases() == []
        assert w.images("web") == [IMAGE_V1, IMAGE_V1, IMAGE_V2]
        assert w.daemon.queue.closed
        assert not w.daemon.readiness().ok


async def test_grace_expiry_cancels_and_still_releases_every_lease(desired: Path) -> None:
    """Past the grace period the pass is cancelled and its leases are still released."""
    slow = FAST.model_copy(update={"checks_pass_seconds": 1000.0})
    (desired / "web.yaml").write_text(app_file("web", regions={"ams": 2}))
    async with daemon_world(desired, behaviour=slow, interval=300, grace_period=2.0) as w:
        await w.until(lambda: w.leases() != [] or len(w.machines("web")) == 2)
        await w.until(lambda: bool(w.leases()))
        w.daemon.request_stop()
        stopped_at = w.clock.monotonic()
        await w.until(lambda: not any(True for _ in w.daemon.in_flight()))
        assert 2.0 <= w.clock.monotonic() - stopped_at < 10
        await anyio.lowlevel.checkpoint()
        assert w.leases() == []
    cancelled = w.metrics.value(
        "machine_reconciler_reconcile_runs_total", app="web", result="cancelled"
    )
    assert cancelled == 1


async def test_a_pass_whose_list_contradicted_itself_keeps_the_re_list_guard(
    desired: Path,
) -> None:
    """Lists stay empty: every pass re-lists before planning (the guard armed by the count
    the first pass left: the three machines it created), makes one staged machine, finds it
    missing and destroys it.  A ``list_inconsistent`` pass does not set the known count to 0,
    which would switch the guard off for the next pass."""
    (desired / "web.yaml").write_text(app_file("web", regions={"ams": 2, "iad": 1}))
    async with daemon_world(desired, interval=10) as w:
        await w.until(lambda: w.daemon.passes >= 1 and w.daemon.results["web"].converged)
        ids = sorted(m["id"] for m in w.machines("web"))
        w.emulator.add_fault(
            {"method": "GET", "path": r"/machines$", "status": 200, "body": [], "count": 1000}
        )
        passes = w.daemon.passes
        await w.until(lambda: w.daemon.passes >= passes + 3, within=300)
        result = w.daemon.results["web"]
        assert result.relisted, "the third pass still re-listed before planning"
        assert Outcome.LIST_INCONSISTENT in {r.outcome for r in result.results}
        assert sorted(m["id"] for m in w.machines("web")) == ids, "every staged machine gone"
