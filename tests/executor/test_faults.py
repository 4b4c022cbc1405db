"""Transport and server faults: 429 bursts, 5xx, dropped connections; the executor converges."""

from __future__ import annotations

from typing import Any

from controller.execution.outcomes import Outcome
from tests.executor.support import IMAGE_V2, desired, fast_behaviour, world

M = r"/machines/[0-9a-f]{14}"


async def test_rate_limit_bursts_are_absorbed_and_the_rollout_converges() -> None:
    """Fly-side 429s (burst 1) are retried by the client; creates and updates still converge."""
    behaviour = fast_behaviour(rate_limits=True, action_burst=1, get_machine_burst=2)
    async with world(behaviour=behaviour) as w:
        created = await w.reconcile(desired())
        assert created.converged, [r.describe() for r in created.results]
        updated = await w.reconcile(desired(image=IMAGE_V2))
        assert updated.converged, [r.describe() for r in updated.results]
        limited = w.requests(status=429)
        assert len(limited) >= 2
        assert any(e["path"].endswith("/machines") for e in limited)  # concurrent creates
        assert all(len(m) == 1 for m in w.by_slot().values())
        assert w.live_leases() == []


SCRIPTED: list[dict[str, Any]] = [
    {"method": "GET", "path": r"/machines$", "status": 503},  # list: retried by the client
    {"method": "POST", "path": M + "/lease$", "status": 500},  # acquire: nothing happened
    {"method": "POST", "path": M + "/lease$", "status": 502, "commit": True},  # ours, nonce lost
    {"method": "POST", "path": M + "$", "status": 502},  # update with current_version: retried
    {"method": "POST", "path": M + "$", "status": 500, "commit": True},  # committed, answer lost
    {"method": "GET", "path": M + "/wait$", "drop": "before"},  # dropped long-poll
    {"method": "GET", "path": M + "$", "status": 504},  # gateway timeout while polling checks
    {"method": "DELETE", "path": M + "/lease$", "drop": "after"},  # released, answer lost
]


async def test_server_errors_and_dropped_connections_still_converge() -> None:
    """Every fault kind on every call of an update: all machines converge, no lease is left."""
    async with world() as w:
        assert (await w.reconcile(desired())).converged
        rules = [w.emulator.add_fault(spec) for spec in SCRIPTED]
        result = await w.reconcile(desired(image=IMAGE_V2))
        assert result.converged, [r.describe() for r in result.results]
        assert all(rule.fired == 1 for rule in rules), [(r.id, r.fired) for r in rules]
        assert {r.outcome for r in result.results} <= {Outcome.OK, Outcome.NOOP}
        assert all(m["config"]["image"] == IMAGE_V2 for m in w.machines())
        assert len(w.machines()) == 3
        # The committed-but-unanswered lease was ours with an unknown nonce: it was waited out,
        # never cleared, so one machine saw a 409 from its own lease.
        assert w.requests("POST", M + "/lease$", status=409)
        assert w.live_leases() == []


async def test_random_faults_converge_within_a_few_passes_without_duplicates() -> None:
    """Seeded random 5xx and drops on every endpoint: repeated passes converge, no duplicates."""
    async with world(seed=11) as w:
        w.emulator.add_fault({"path": "/v1/", "probability": 0.08, "status": 503})
        w.emulator.add_fault({"path": "/v1/", "probability": 0.05, "drop": "after"})
        w.emulator.add_fault({"path": "/v1/", "probability": 0.05, "drop": "before"})
        app = desired(groups={"web": {"regions": {"ams": 3, "iad": 2}}})
        for image in (None, IMAGE_V2):
            target = (
                app
                if image is None
                else desired(image=image, groups={"web": {"regions": {"ams": 3, "iad": 2}}})
            )
            for _ in range(4):
                result = await w.reconcile(target)
                if result.converged:
                    break
            assert result.converged, [r.describe() for r in result.results]
            slots = w.by_slot()
            assert len(slots) == 5
            assert all(len(m) == 1 for m in slots.values())
        assert all(m["config"]["image"] == IMAGE_V2 for m in w.machines())
        w.emulator.faults.clear()
        w.clock.advance(301)  # create leases whose nonce was lost with a dropped response expire
        assert w.live_leases() == []
