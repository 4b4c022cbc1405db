"""Benchmark: planning 10,000 machines (100 apps x 100), the DESIGN.md section 11 target.

Run by ``make bench`` only (marker ``bench``); ``make test`` deselects it, because speed is
measured here and never asserted by timed unit tests.
"""

from __future__ import annotations

import time

import pytest

from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp, parse_app
from controller.planning.plan import plan
from tests.core.planning_support import FakeFly

pytestmark = pytest.mark.bench

TARGET_SECONDS = 0.5
IMAGE = "registry.fly.io/app:v1"


def _fleet() -> list[tuple[DesiredApp, list[LiveMachine]]]:
    fly = FakeFly()
    cases = []
    for i in range(100):
        app = parse_app(
            {
                "app": f"app-{i}",
                "defaults": {"config": {"image": IMAGE, "env": {"A": "1", "B": "2"}}},
                "groups": {
                    "web": {
                        "regions": {"ams": 40, "iad": 40},
                        "config": {
                            "services": [{"internal_port": 8080, "ports": [{"port": 443}]}],
                            "checks": {"h": {"type": "http", "interval": "60s"}},
                        },
                    },
                    "worker": {"regions": {"fra": 20}},
                },
            }
        )
        cases.append((app, fly.apply(plan(app, []), [])))
    return cases


def test_plan_ten_thousand_converged_machines() -> None:
    """100 apps x 100 converged machines: CPU time of one full planning pass (target < 0.5 s)."""
    cases = _fleet()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        results = [plan(app, live) for app, live in cases]
        best = min(best, time.process_time() - start)
    assert sum(len(r.actions) for r in results) == 10_000
    assert not any(r.has_changes for r in results)
    print(f"\nplan 10,000 machines (no changes): {best:.3f} s CPU (target < {TARGET_SECONDS} s)")
    assert best < TARGET_SECONDS
