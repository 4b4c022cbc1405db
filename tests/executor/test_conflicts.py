"""Concurrent writers: 409 version conflicts and stale lease versions re-read and re-plan."""

from __future__ import annotations

import itertools

from controller.execution.executor import ExecutorSettings
from controller.execution.outcomes import Outcome
from tests.executor.support import IMAGE_V2, desired, world

NONCE = "fly-machine-lease-nonce"
ONE = {"web": {"regions": {"ams": 1}}}


async def test_external_bump_between_read_and_write_is_replanned_and_converges() -> None:
    """An outside update right before ours -> 409 -> re-read, re-plan, retry -> converged."""
    async with world() as w:
        assert (await w.reconcile(desired(groups=ONE))).converged
        [machine] = w.machines()
        w.emulator.external_writer(
            {"kind": "bump_version", "app": "web", "machine_id": machine["id"], "on": "next_update"}
        )
        result = await w.reconcile(desired(image=IMAGE_V2, groups=ONE))
        assert result.converged, [r.describe() for r in result.results]
        [done] = result.results
        assert (done.outcome, done.attempts) == (Outcome.OK, 2)
        assert "re-planned" in done.message
        first, second = w.requests("POST", rf"/machines/{machine['id']}$")
        assert first["status"] == 409
        assert first["body"]["current_version"] == machine["version"]
        bumped = w.emulator.dump()["machines"][0]["versions"][1]  # newest first: ours, bump, v1
        assert second["body"]["current_version"] == bumped != machine["version"]
        assert NONCE in first["headers_present"]
        assert NONCE in second["headers_present"]
        [after] = w.machines()
        assert after["config"]["image"] == IMAGE_V2
        assert "EMULATOR_EXTERNAL_BUMP" not in (after["config"].get("env") or {})  # replaced
        assert w.live_leases() == []


async def test_lease_showing_a_newer_version_replans_and_may_become_a_noop() -> None:
    """Someone applied our change just before we leased: re-read, re-plan, verify -> noop."""
    async with world() as w:
        assert (await w.reconcile(desired(groups=ONE))).converged
        [machine] = w.machines()
        w.emulator.external_writer(
            {
                "kind": "bump_version",
                "app": "web",
                "machine_id": machine["id"],
                "on": "next_lease",
                "patch": {"image": IMAGE_V2},
            }
        )
        mark = w.mark()
        result = await w.reconcile(desired(image=IMAGE_V2, groups=ONE))
        [done] = result.results
        assert done.outcome is Outcome.NOOP, done.describe()
        assert "in sync after re-reading" in done.message
        assert not w.requests("POST", rf"/machines/{machine['id']}$")
        [bumped] = w.machines()
        assert bumped["version"] != machine["version"]
        waits = w.requests("GET", rf"/machines/{machine['id']}/wait$", since=mark)
        # verified: started, then stayed up for the smoke period (both waits on that version)
        assert [e["query"]["version"] for e in waits] == [[bumped["version"]]] * 2
        assert [e["query"]["state"] for e in waits] == [["started"], ["stopped"]]
        assert result.converged
        assert w.live_leases() == []


async def test_persistent_version_conflicts_requeue_after_jittered_backoff() -> None:
    """Six 409s in a row: 5 re-plans with jittered backoff from 100 ms, then requeue."""
    async with world(settings=ExecutorSettings(conflict_retries=5)) as w:
        assert (await w.reconcile(desired(groups=ONE))).converged
        [machine] = w.machines()
        w.emulator.add_fault(
            {
                "method": "POST",
                "path": rf"/machines/{machine['id']}$",
                "status": 409,
                "count": 6,
                "body": {"error": "machine version mismatch: current_version is stale"},
            }
        )
        result = await w.reconcile(desired(image=IMAGE_V2, groups=ONE))
        [done] = result.results
        assert (done.outcome, done.attempts) == (Outcome.REQUEUE, 6)
        assert done.error_class == "version_conflict"
        assert done.retry_after == 5.0
        posts = w.requests("POST", rf"/machines/{machine['id']}$")
        assert [p["status"] for p in posts] == [409] * 6
        gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(posts)]
        assert all(0 <= gap <= 0.1 * 2**i + 1e-9 for i, gap in enumerate(gaps)), gaps
        assert len(set(gaps)) == len(gaps)  # jittered, not a fixed schedule
        assert not result.converged
        assert result.partial  # a requeue is blocked, not failed (exit 3)
        assert w.live_leases() == []
