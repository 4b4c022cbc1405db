"""The executor against the emulator served over real loopback HTTP, on the real clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from controller.clock import SystemClock
from controller.core.retry import Backoff, RetryPolicy
from controller.emulator import Behaviour, EmulatorState, build_app, serve_in_thread
from controller.execution.executor import Executor, ExecutorSettings
from controller.execution.outcomes import Outcome
from controller.execution.reconciler import reconcile_app
from controller.flyapi import MachinesClient, RateLimits
from controller.model.actual import SLOT_KEY
from tests.executor.support import IMAGE_V2, TOKEN, desired, launch_id_factory
from tests.executor.test_update import RICH_CONFIG

FAST = Behaviour(
    rate_limits=False,
    boot_seconds=0.05,
    stop_seconds=0.02,
    destroy_seconds=0.01,
    checks_pass_seconds=0.05,
    wait_poll_seconds=0.01,
)
#: Check reads every 0.02..0.05 s: RICH_CONFIG's checks say 15 s and 30 s, and reads are only
#: capped by check_read_max (5 s by default), which would add 5 s per machine here.
SETTINGS = ExecutorSettings(
    smoke_seconds=0.1,
    check_poll_min=0.02,
    check_poll_max=0.04,
    check_read_max=0.05,
    create_relist_delay=0.02,
)

ALL_AT_ONCE = {"web": {"regions": {"ams": 2, "iad": 1}, "update": {"max_unavailable": 3}}}


@dataclass
class Served:
    emulator: EmulatorState
    executor: Executor


@asynccontextmanager
async def served() -> AsyncIterator[Served]:
    """The emulator on a free loopback port, a real-HTTP client and an executor."""
    app = build_app(seed=5, behaviour=FAST)
    emulator: EmulatorState = app.state.emulator
    emulator.seed_fixtures({"apps": [{"name": "web"}]})
    with serve_in_thread(app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            clock = SystemClock()
            client = MachinesClient(
                http,
                token=SecretStr(TOKEN),
                clock=clock,
                rng=random.Random(1),
                limits=RateLimits.disabled(),
                retry=RetryPolicy(transient=Backoff(base=0.05, cap=0.2, minimum=0.05)),
            )
            executor = Executor(
                client,
                clock=clock,
                rng=random.Random(2),
                settings=SETTINGS,
                launch_ids=launch_id_factory(),
            )
            yield Served(emulator, executor)


async def test_apply_then_replan_is_empty_over_real_http() -> None:
    """Over loopback HTTP a rich config converges, re-plans to no-ops, then rolls an update."""
    groups = {
        "web": {
            "regions": {"ams": 2, "iad": 1},
            "config": RICH_CONFIG,
            "update": {"max_unavailable": 3},
        }
    }
    async with served() as s:
        first = await reconcile_app(desired(groups=groups), executor=s.executor)
        assert first.converged, [r.describe() for r in first.results]
        again = await reconcile_app(desired(groups=groups), executor=s.executor)
        assert again.plan is not None
        assert not again.plan.has_changes
        changed = {"web": {**groups["web"], "config": {**RICH_CONFIG, "image": IMAGE_V2}}}
        rolled = await reconcile_app(desired(groups=changed), executor=s.executor)
        assert rolled.converged
        assert [r.outcome for r in rolled.results] == [Outcome.OK] * 3
        assert all(m["lease"] is None for m in s.emulator.dump()["machines"])


async def test_dropped_connections_over_real_http_make_no_duplicates() -> None:
    """Real sockets closed mid-response on a create and an update: no duplicate, converged."""
    async with served() as s:
        s.emulator.add_fault({"method": "POST", "path": r"/machines$", "drop": "after"})
        created = await reconcile_app(desired(groups=ALL_AT_ONCE), executor=s.executor)
        assert created.converged, [r.describe() for r in created.results]
        slots = [m["config"]["metadata"][SLOT_KEY] for m in s.emulator.machines("web")]
        assert sorted(slots) == ["web-ams-0", "web-ams-1", "web-iad-0"]
        s.emulator.add_fault(
            {"method": "POST", "path": r"/machines/[0-9a-f]{14}$", "drop": "after"}
        )
        updated = await reconcile_app(
            desired(image=IMAGE_V2, groups=ALL_AT_ONCE), executor=s.executor
        )
        assert updated.converged, [r.describe() for r in updated.results]
        assert sorted(r.outcome for r in updated.results) == [Outcome.NOOP, Outcome.OK, Outcome.OK]
        assert all(m["config"]["image"] == IMAGE_V2 for m in s.emulator.machines("web"))
        assert all(m["lease"] is None for m in s.emulator.dump()["machines"])
