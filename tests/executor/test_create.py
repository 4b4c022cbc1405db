"""Creates: never a duplicate after ambiguous failures; capacity, quota and volume conditions."""

from __future__ import annotations

from typing import Any

import pytest

from controller.execution.executor import ExecutorSettings
from controller.execution.outcomes import Outcome
from controller.model.actual import LAUNCH_KEY
from tests.executor.support import IMAGE_V2, desired, fast_behaviour, world


@pytest.mark.parametrize(
    ("fault", "posts"),
    [
        ({"drop": "after"}, 3),  # the response was lost, the machine exists: adopt it
        ({"status": 500, "commit": True}, 3),  # a 5xx that still created it (silent success)
        ({"status": 408, "commit": True}, 3),  # a flyd timeout that still created it
        ({"status": 503}, 4),  # a 5xx that created nothing: the re-list is empty, create again
        ({"drop": "before"}, 4),  # the connection dropped before the server acted
    ],
    ids=["drop-after", "500-committed", "408-committed", "503-nothing", "drop-before"],
)
async def test_ambiguous_create_failure_never_makes_a_duplicate(
    fault: dict[str, Any], posts: int
) -> None:
    """After an ambiguous create failure the executor re-lists by launch tag before retrying."""
    async with world() as w:
        w.emulator.add_fault({"method": "POST", "path": r"/machines$", "count": 1, **fault})
        result = await w.reconcile(desired())
        assert result.converged, [r.describe() for r in result.results]
        slots = w.by_slot()
        assert sorted(slots) == ["web-ams-0", "web-ams-1", "web-iad-0"]
        assert all(len(machines) == 1 for machines in slots.values())
        assert len(w.requests("POST", r"/machines$")) == posts
        relists = [
            e
            for e in w.requests("GET", r"/machines$")
            if any(k.startswith(f"metadata.{LAUNCH_KEY}") for k in e["query"])
        ]
        assert len(relists) == 1
        tags = {m[0]["config"]["metadata"][LAUNCH_KEY] for m in slots.values()}
        assert len(tags) == 3
        assert relists[0]["query"][f"metadata.{LAUNCH_KEY}"][0] in tags
        assert bool(w.progress("adopted")) == (posts == 3)
        assert w.live_leases() == []  # the adopted create's lease was recognised and released


async def test_capacity_in_one_region_is_partial_while_others_converge() -> None:
    """No room in ams: that slot ends 'capacity' (later ams creates are not tried), iad is fine."""
    behaviour = fast_behaviour(region_capacity_mb={"ams": 256})
    settings = ExecutorSettings(create_concurrency=1)
    async with world(behaviour=behaviour, settings=settings) as w:
        result = await w.reconcile(desired(groups={"web": {"regions": {"ams": 3, "iad": 1}}}))
        outcomes = {r.slot: r for r in result.results}
        assert outcomes["web-ams-0"].outcome is Outcome.OK
        assert outcomes["web-iad-0"].outcome is Outcome.OK
        tried, skipped = outcomes["web-ams-1"], outcomes["web-ams-2"]
        assert (tried.outcome, tried.attempts) == (Outcome.CAPACITY, 1)
        assert tried.error_class == "insufficient_capacity"
        assert tried.request_id
        assert tried.retry_after == 30.0
        assert (skipped.outcome, skipped.attempts) == (Outcome.CAPACITY, 0)
        assert result.partial
        assert not result.converged
        assert sorted(w.by_slot()) == ["web-ams-0", "web-iad-0"]
        assert len(w.requests("POST", r"/machines$")) == 3


@pytest.mark.parametrize(
    "limits",
    [{"org_machine_limit": 2}, {"org_region_quota_mb": {"ams": 512}}],
    ids=["machine-limit-422", "regional-quota-403"],
)
async def test_quota_stops_creates_but_updates_continue(limits: dict[str, Any]) -> None:
    """A quota error stops the app's remaining creates; updates of existing machines go on."""
    settings = ExecutorSettings(create_concurrency=1)
    async with world(behaviour=fast_behaviour(**limits), settings=settings) as w:
        assert (await w.reconcile(desired(groups={"web": {"regions": {"ams": 2}}}))).converged
        result = await w.reconcile(desired(image=IMAGE_V2, groups={"web": {"regions": {"ams": 4}}}))
        by_action = {(r.action, r.slot): r for r in result.results}
        tried, skipped = by_action["create", "web-ams-2"], by_action["create", "web-ams-3"]
        assert (tried.outcome, tried.attempts, tried.error_class) == (
            Outcome.QUOTA,
            1,
            "quota_exceeded",
        )
        assert (skipped.outcome, skipped.attempts) == (Outcome.QUOTA, 0)
        assert skipped.retry_after == tried.retry_after == 30.0
        assert by_action["update", "web-ams-0"].outcome is Outcome.OK
        assert by_action["update", "web-ams-1"].outcome is Outcome.OK
        assert result.partial


async def test_volume_in_use_is_a_volume_condition() -> None:
    """A 412 volume_placement_capacity create ends 'volume'; the volume's holder is untouched."""
    async with world() as w:
        seeded = w.emulator.seed_fixtures(
            {
                "volumes": [{"app": "web", "name": "data", "region": "ams", "id": "vol_data01"}],
                "machines": [
                    {
                        "app": "web",
                        "region": "ams",
                        "config": {
                            "image": "registry.fly.io/other:v1",
                            "mounts": [{"volume": "vol_data01", "path": "/data"}],
                        },
                    }
                ],
            }
        )
        holder = seeded["machines"][0]
        config = {"mounts": [{"volume": "vol_data01", "path": "/data"}]}
        result = await w.reconcile(
            desired(groups={"db": {"regions": {"ams": 1}, "config": config}})
        )
        [volume] = result.results
        assert (volume.outcome, volume.error_class) == (Outcome.VOLUME, "volume_in_use")
        assert "vol_data01" in volume.message
        assert result.partial
        assert result.plan is not None
        assert [u.machine_id for u in result.plan.unmanaged] == [holder["id"]]
        [still] = w.machines()
        assert (still["id"], still["version"]) == (holder["id"], holder["version"])


async def test_not_found_right_after_create_is_retried_briefly() -> None:
    """GET/wait answer 404 for a moment after a create (FLY_API.md 1.6): that is waited out."""
    async with world(behaviour=fast_behaviour(read_after_create_404_seconds=3)) as w:
        result = await w.reconcile(desired(groups={"web": {"regions": {"ams": 1}}}))
        assert result.converged, [r.describe() for r in result.results]
        assert w.requests("GET", r"/wait$", status=404)
        assert w.live_leases() == []
