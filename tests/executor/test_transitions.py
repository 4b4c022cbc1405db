"""Starts, stops and restarts (``state:``, ``restart_generation``, ``restart``) and per-machine
volumes, executed against the in-process emulator on a virtual clock."""

from __future__ import annotations

from typing import Any

from controller.execution.outcomes import Outcome
from controller.execution.reconciler import list_live
from controller.model.actual import RESTART_KEY
from controller.planning.restarting import restart_plan
from tests.executor.support import desired, intervals, peak_overlap, world


def group(**extra: Any) -> dict[str, Any]:
    return {
        "web": {
            "regions": {"ams": 3},
            "update": {"max_unavailable": 1, "wait_timeout": 60, "smoke_period": 0},
            **extra,
        }
    }


async def test_restarts_roll_one_at_a_time_under_leases_and_record_the_generation() -> None:
    async with world() as w:
        assert (await w.reconcile(desired(groups=group(restart_generation=1)))).converged
        mark = w.mark()
        result = await w.reconcile(desired(groups=group(restart_generation=2)))
        assert result.converged, [r.describe() for r in result.results]
        assert {r.action for r in result.results} == {"restart"}
        sent = w.requests("POST", "/restart$", since=mark)
        assert len(sent) == 3
        assert all("fly-machine-lease-nonce" in e["headers_present"] for e in sent)
        spans = intervals(w, ("POST", "/lease$"), ("DELETE", "/lease$"))
        assert peak_overlap(spans) == 1, "max_unavailable 1: one restart at a time"
        assert {m["config"]["metadata"][RESTART_KEY] for m in w.machines()} == {"2"}
        again = await w.reconcile(desired(groups=group(restart_generation=2)))
        assert {r.outcome for r in again.results} == {Outcome.NOOP}


async def test_a_restart_429_is_paced_by_its_retry_after_not_failed() -> None:
    async with world() as w:
        app = desired(groups=group())
        assert (await w.reconcile(app)).converged
        w.emulator.add_fault(
            {
                "method": "POST",
                "path": "/restart$",
                "count": 6,
                "status": 429,
                "headers": {"Retry-After": "7"},
                "body": {"error": "rate limit exceeded"},
            }
        )
        proposal = restart_plan(app, await list_live(w.client, "web"))
        began = w.clock.monotonic()
        result = await w.executor.execute(proposal.plan, app)
        assert result.converged, [r.describe() for r in result.results]
        assert len(w.requests("POST", "/restart$", status=429)) == 6
        assert w.clock.monotonic() - began >= 7, "waited as Fly asked"


async def test_a_stopped_group_is_stopped_and_a_started_one_started() -> None:
    async with world() as w:
        assert (await w.reconcile(desired(groups=group()))).converged
        stopped = await w.reconcile(desired(groups=group(state="stopped")))
        assert stopped.converged, [r.describe() for r in stopped.results]
        assert {m["state"] for m in w.machines()} == {"stopped"}
        started = await w.reconcile(desired(groups=group(state="started")))
        assert started.converged, [r.describe() for r in started.results]
        assert {m["state"] for m in w.machines()} == {"started"}
        assert {r.action for r in started.results} == {"start"}


async def test_concurrent_creates_get_one_volume_each() -> None:
    mounts = [{"path": "/data", "volume": {"name": "data", "size_gb": 2}}]
    async with world() as w:
        groups = {"web": {"regions": {"ams": 3, "iad": 1}, "mounts": mounts}}
        result = await w.reconcile(desired(groups=groups))
        assert result.converged, [r.describe() for r in result.results]
        volumes = w.emulator.dump()["volumes"]
        attached = {m["config"]["mounts"][0]["volume"]: m["region"] for m in w.machines()}
        assert len(attached) == 4
        assert {v["id"]: v["region"] for v in volumes} == attached
