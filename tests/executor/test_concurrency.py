"""Concurrency: rolling batches of max_unavailable, and the global in-flight cap."""

from __future__ import annotations

import anyio
import pytest

from controller.execution.executor import ExecutorSettings
from controller.execution.outcomes import AppResult
from controller.execution.reconciler import reconcile_app
from controller.model.actual import SLOT_KEY
from controller.model.desired import DesiredApp
from tests.executor.support import (
    IMAGE_V1,
    IMAGE_V2,
    World,
    desired,
    intervals,
    peak_overlap,
    world,
)


@pytest.mark.parametrize(("max_unavailable", "batch"), [(1, 1), (2, 2), (0.5, 3)])
async def test_rolling_batches_respect_max_unavailable(max_unavailable: float, batch: int) -> None:
    """Six machines roll in batches: never more than the batch leased at once, in plan order."""

    def app(image: str = IMAGE_V1) -> DesiredApp:
        group = {"regions": {"ams": 6}, "update": {"max_unavailable": max_unavailable}}
        return desired(image=image, groups={"web": group})

    async with world() as w:
        assert (await w.reconcile(app())).converged
        mark = w.mark()
        result = await w.reconcile(app(IMAGE_V2))
        assert result.converged
        spans = intervals(w, ("POST", r"/lease$"), ("DELETE", r"/lease$"))
        spans = [s for s in spans if s[0] >= w.emulator.requests()[mark]["at"]]
        assert len(spans) == 6
        assert peak_overlap(spans) == batch
        order = [r.machine_id for r in result.results]
        starts = {
            e["path"].split("/")[5]: e["at"]
            for e in reversed(w.requests("POST", r"/lease$", since=mark))
        }
        ends = {
            e["path"].split("/")[5]: e["at"] for e in w.requests("DELETE", r"/lease$", since=mark)
        }
        for k in range(batch, 6, batch):
            previous, current = order[k - batch : k], order[k : k + batch]
            assert min(starts[m] for m in current) >= max(ends[m] for m in previous)


def _create_spans(w: World, apps: tuple[str, ...]) -> list[tuple[float, float]]:
    """Per created machine: from its POST /machines to the release of its create lease."""
    spans = []
    for app in apps:
        ids = {m["config"]["metadata"][SLOT_KEY]: m["id"] for m in w.machines(app)}
        ends = {e["path"].split("/")[5]: e["at"] for e in w.requests("DELETE", rf"/apps/{app}/")}
        for post in w.requests("POST", rf"/apps/{app}/machines$", status=200):
            mid = ids[post["body"]["config"]["metadata"][SLOT_KEY]]
            spans.append((post["at"], ends[mid]))
    return spans


@pytest.mark.parametrize("cap", [8, 3])
async def test_machine_operations_in_flight_never_exceed_the_cap(cap: int) -> None:
    """Three apps of six creates each, run together on one executor: at most `cap` at once."""
    apps = ("alpha", "bravo", "charlie")
    settings = ExecutorSettings(max_in_flight=cap, create_concurrency=6)
    results: dict[str, AppResult] = {}
    async with world(apps=apps, settings=settings) as w:

        async def one(name: str) -> None:
            app = desired(app=name, groups={"web": {"regions": {"ams": 3, "iad": 3}}})
            results[name] = await reconcile_app(app, executor=w.executor)

        async with anyio.create_task_group() as tg:
            for name in apps:
                tg.start_soon(one, name)
        assert all(r.converged for r in results.values())
        spans = _create_spans(w, apps)
        assert len(spans) == 18
        assert peak_overlap(spans) == cap
        assert w.executor.limiter.borrowed_tokens == 0
