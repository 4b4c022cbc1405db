"""Updating machines: the exact request protocol, skip_launch, re-plans and per-machine errors."""

from __future__ import annotations

import time
from typing import Any

from controller.execution.outcomes import Outcome, Progress
from controller.execution.reconciler import list_live
from controller.model.actual import LAUNCH_KEY
from controller.planning.plan import NoOp, plan
from tests.executor.support import IMAGE_V1, IMAGE_V2, desired, world

NONCE = "fly-machine-lease-nonce"

RICH_CONFIG: dict[str, Any] = {
    "image": "registry.fly.io/acme-web:v42",
    "guest": {"cpu_kind": "shared", "cpus": 2, "memory_mb": 1024},
    "env": {"LOG_LEVEL": "info", "EMPTY": ""},
    "services": [
        {
            "protocol": "tcp",
            "internal_port": 8080,
            "ports": [
                {"port": 443, "handlers": ["tls", "http"]},
                {"port": 80, "handlers": ["http"], "force_https": True},
            ],
            "concurrency": {"type": "requests", "soft_limit": 20, "hard_limit": 25},
            "autostop": "stop",
            "autostart": True,
            "min_machines_running": 1,
            "checks": [{"type": "http", "path": "/ready", "interval": "15s", "timeout": "2s"}],
        }
    ],
    "checks": {"alive": {"type": "tcp", "port": 8080, "interval": "30s", "timeout": "5s"}},
    "restart": {"policy": "always"},
    "init": {"cmd": ["serve", "--port", "8080"]},
    "metadata": {"team": "core"},
    "stop_config": {"timeout": "30s", "signal": "SIGINT"},
    "auto_destroy": False,
}


async def test_update_follows_the_lease_write_wait_release_protocol() -> None:
    """Each update is lease -> POST with current_version + nonce -> wait version -> release."""
    async with world() as w:
        assert (await w.reconcile(desired())).converged
        before = {m["id"]: m["version"] for m in w.machines()}
        mark = len(w.emulator.requests())
        wall = time.monotonic()
        result = await w.reconcile(desired(image=IMAGE_V2))
        assert time.monotonic() - wall < 5
        assert result.converged
        assert [r.outcome for r in result.results] == [Outcome.OK] * 3
        log = w.emulator.requests()[mark:]
        for machine in w.machines():
            mid, old = machine["id"], before[machine["id"]]
            mine = [e for e in log if f"/machines/{mid}" in e["path"]]
            kinds = [(e["method"], e["path"].split(mid)[1] or "/") for e in mine]
            assert kinds[0] == ("POST", "/lease")
            assert NONCE not in mine[0]["headers_present"]  # a fresh acquisition, not a refresh
            assert mine[0]["body"]["ttl"] == 30
            update = next(
                e for e in mine if e["method"] == "POST" and kinds[mine.index(e)][1] == "/"
            )
            assert update["body"]["current_version"] == old
            assert NONCE in update["headers_present"]
            assert update["body"]["config"]["image"] == IMAGE_V2
            wait = next(e for e in mine if e["path"].endswith("/wait"))
            assert wait["query"]["version"] == [machine["version"]]
            assert wait["query"]["state"] == ["started"]
            assert kinds[-1] == ("DELETE", "/lease")
            assert NONCE in mine[-1]["headers_present"]
            refreshes = [
                e for e in mine[1:] if e["path"].endswith("/lease") and e["method"] == "POST"
            ]
            assert all(NONCE in e["headers_present"] for e in refreshes)
            # Six calls, no refresh: lease, write, wait started, stay up for the smoke period
            # (one long-poll for stopped), one read for exits since the update, release.
            assert kinds == [
                ("POST", "/lease"),
                ("POST", "/"),
                ("GET", "/wait"),
                ("GET", "/wait"),
                ("GET", "/"),
                ("DELETE", "/lease"),
            ]
            assert mine[3]["query"]["state"] == ["stopped"]
            assert mine[3]["query"]["version"] == [machine["version"]]
            assert machine["config"]["image"] == IMAGE_V2
            assert machine["state"] == "started"
        assert w.live_leases() == []


async def test_fresh_apply_then_replan_is_all_noops() -> None:
    """After applying a rich config, planning against the server-filled configs is empty."""
    async with world() as w:
        app = desired(groups={"web": {"regions": {"ams": 2}, "config": RICH_CONFIG}})
        first = await w.reconcile(app)
        assert first.converged, [r.describe() for r in first.results]
        second = await w.reconcile(app)
        assert second.converged
        assert second.plan is not None
        assert not second.plan.has_changes, [
            (getattr(a, "slot", None), [c.path for c in getattr(a, "diff", ())])
            for a in second.plan.changes
        ]
        assert all(isinstance(a, NoOp) and not a.stale_spec for a in second.plan.actions)
        assert {r.outcome for r in second.results} == {Outcome.NOOP}
        stored = w.machines()[0]["config"]
        assert stored["guest"]["memory_mb"] == 1024
        assert stored["metadata"]["fly_platform_version"] == "v2"  # a server-filled field
        assert stored["metadata"][LAUNCH_KEY]


async def test_stopped_machine_is_updated_with_skip_launch_and_stays_stopped() -> None:
    """A stopped machine gets skip_launch: it takes the new version and stays stopped."""
    async with world() as w:
        app = desired(groups={"web": {"regions": {"ams": 1}}})
        assert (await w.reconcile(app)).converged
        [machine] = w.machines()
        await w.client.stop_machine("web", machine["id"])
        w.clock.advance(5)
        mark = len(w.emulator.requests())
        result = await w.reconcile(desired(image=IMAGE_V2, groups={"web": {"regions": {"ams": 1}}}))
        assert result.converged, [r.describe() for r in result.results]
        [update] = w.requests("POST", rf"/machines/{machine['id']}$")
        assert update["body"]["skip_launch"] is True
        [after] = w.machines()
        assert (after["state"], after["config"]["image"]) == ("stopped", IMAGE_V2)
        assert not [e for e in w.emulator.requests()[mark:] if e["path"].endswith("/wait")]


async def test_bad_request_fails_one_machine_and_the_others_continue() -> None:
    """A 400 on one update is bad_request for that machine; the rest of the group converges."""
    async with world() as w:
        assert (await w.reconcile(desired())).converged
        target = w.machines()[0]["id"]
        w.emulator.add_fault(
            {
                "method": "POST",
                "path": rf"/machines/{target}$",
                "status": 400,
                "body": {"error": "invalid config.guest: bad LOG_TOKEN=hunter2-secret"},
            }
        )
        result = await w.reconcile(desired(image=IMAGE_V2, env={"LOG_TOKEN": "hunter2-secret"}))
        failed = [r for r in result.results if r.machine_id == target]
        assert [r.outcome for r in failed] == [Outcome.BAD_REQUEST]
        assert failed[0].error_class == "bad_request"
        assert failed[0].request_id
        assert "hunter2-secret" not in failed[0].message  # env values never reach a record
        assert all(r.outcome is Outcome.OK for r in result.results if r.machine_id != target)
        assert not result.converged
        assert not result.partial
        assert w.live_leases() == []


async def test_machine_destroyed_after_planning_is_dropped_as_gone() -> None:
    """A machine destroyed between plan and execution (412 destroying) ends 'gone'."""
    async with world() as w:
        assert (await w.reconcile(desired())).converged
        app = desired(image=IMAGE_V2)
        stale_plan = plan(app, await list_live(w.client, "web"))
        victim = w.machines()[0]["id"]
        await w.client.destroy_machine("web", victim, force=True)
        result = await w.executor.execute(stale_plan, app)
        outcomes = {r.machine_id: r.outcome for r in result.results}
        assert outcomes.pop(victim) is Outcome.GONE
        assert set(outcomes.values()) == {Outcome.OK}


async def test_progress_events_report_each_phase_in_order() -> None:
    """on_event sees leased, writing, waiting, checking, then the final result."""
    async with world() as w:
        assert (await w.reconcile(desired(groups={"web": {"regions": {"ams": 1}}}))).converged
        w.events.clear()
        await w.reconcile(desired(image=IMAGE_V2, groups={"web": {"regions": {"ams": 1}}}))
        phases = [getattr(e, "phase", "result") for e in w.events]
        steps = [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p]
        assert steps == ["leased", "writing", "waiting", "checking", "result"]
        # Each long-poll and check-interval pause is announced (the daemon's liveness).
        quiet = [e.phase for e in w.events if isinstance(e, Progress) and e.quiet > 0]
        assert "waiting" in quiet
        assert "checking" in quiet
        assert w.results()[0].version == w.machines()[0]["version"]
        assert IMAGE_V1 not in repr(w.events)  # configs never travel in events
