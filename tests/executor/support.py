"""Test support for the executor: an emulated world on a virtual clock.

The clock is :class:`controller.testing.FakeClock`: concurrent rollouts keep exact virtual
timings (assertable from the emulator's request log) and still take no wall time.

:func:`world` builds an emulator on that clock, a :class:`MachinesClient` over the in-process
:class:`EmulatorTransport`, and an :class:`Executor`, for the duration of an ``async with`` in
the test body (the clock needs no driver: it jumps whenever every task waits).
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from starlette.applications import Starlette

from controller.emulator import Behaviour, EmulatorState, EmulatorTransport, build_app
from controller.execution.executor import Executor, ExecutorSettings
from controller.execution.outcomes import AppResult, Event, MachineResult, Progress
from controller.execution.reconciler import reconcile_app
from controller.flyapi import MachinesClient, RateLimits
from controller.model.desired import DesiredApp, parse_app
from controller.testing import FakeClock

TOKEN = "executor-test-token-0123456789"
IMAGE_V1 = "registry.fly.io/web:v1"
IMAGE_V2 = "registry.fly.io/web:v2"
CRASHLOOP = "registry.fly.io/web:v3-crashloop"
OTHER_OWNER = "someone-else@fly.io"


# ------------------------------------------------------------------------------ world


def fast_behaviour(**changes: Any) -> Behaviour:
    """Production-like emulator timings, without rate limits, with a coarser wait poll."""
    base: dict[str, Any] = {
        "rate_limits": False,
        "boot_seconds": 2.0,
        "stop_seconds": 1.0,
        "checks_pass_seconds": 3.0,
        "wait_poll_seconds": 0.5,
    }
    return Behaviour(**{**base, **changes})


def launch_id_factory(seed: int = 0) -> Callable[[], str]:
    """uuid4 launch ids from a seeded generator (deterministic across runs)."""
    rng = random.Random(f"launch:{seed}")
    return lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass
class World:
    """An emulator, a client and an executor on one :class:`FakeClock`."""

    clock: FakeClock
    app: Starlette
    emulator: EmulatorState
    client: MachinesClient
    executor: Executor
    events: list[Event]

    async def reconcile(self, desired: DesiredApp, **kwargs: Any) -> AppResult:
        """One reconcile pass of ``desired``."""
        return await reconcile_app(desired, executor=self.executor, **kwargs)

    def mark(self) -> int:
        """The request log's current length, for ``requests(since=...)``."""
        return len(self.emulator.requests())

    def requests(
        self,
        method: str | None = None,
        path: str = "",
        *,
        status: int | None = None,
        since: int = 0,
    ) -> list[dict[str, Any]]:
        """Request-log entries (from index ``since``) matching ``method``, the regex ``path``
        and ``status``."""
        return [
            e
            for e in self.emulator.requests()[since:]
            if (method is None or e["method"] == method)
            and re.search(path, e["path"])
            and (status is None or e["status"] == status)
        ]

    def machines(self, app: str = "web") -> list[dict[str, Any]]:
        """The app's live machines as the emulator's state dump shows them (leases included)."""
        return [
            m
            for m in self.emulator.dump()["machines"]
            if m["app"] == app and m["state"] != "destroyed"
        ]

    def by_slot(self, app: str = "web") -> dict[str, list[dict[str, Any]]]:
        """Live machines per ``reconciler/slot``."""
        out: dict[str, list[dict[str, Any]]] = {}
        for machine in self.machines(app):
            slot = (machine["config"].get("metadata") or {}).get("reconciler/slot", "")
            out.setdefault(slot, []).append(machine)
        return out

    def live_leases(self) -> list[dict[str, Any]]:
        """Every live lease in the emulator, any app, with its owner."""
        return [m["lease"] for m in self.emulator.dump()["machines"] if m["lease"] is not None]

    def results(self) -> list[MachineResult]:
        """Final results emitted so far."""
        return [e for e in self.events if isinstance(e, MachineResult)]

    def progress(self, phase: str | None = None) -> list[Progress]:
        """Progress events emitted so far (of one ``phase``)."""
        return [e for e in self.events if isinstance(e, Progress) and phase in (None, e.phase)]


@asynccontextmanager
async def world(
    *,
    behaviour: Behaviour | None = None,
    settings: ExecutorSettings | None = None,
    limits: RateLimits | None = None,
    apps: tuple[str, ...] = ("web",),
    seed: int = 7,
    on_event: Callable[[Event], None] | None = None,
    emulator_token: str | None = None,
) -> AsyncIterator[World]:
    """An emulated world for one test (use ``async with`` in the test body).

    ``emulator_token`` makes the emulator accept only that token (the client sends TOKEN).
    """
    clock = FakeClock()
    app = build_app(
        clock=clock, seed=seed, behaviour=behaviour or fast_behaviour(), token=emulator_token
    )
    emulator: EmulatorState = app.state.emulator
    emulator.seed_fixtures({"apps": [{"name": name, "org_slug": "personal"} for name in apps]})
    events: list[Event] = []

    def record(event: Event) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    async with httpx.AsyncClient(
        transport=EmulatorTransport(app), base_url="http://emulator"
    ) as http:
        client = MachinesClient(
            http,
            token=SecretStr(TOKEN),
            clock=clock,
            rng=random.Random(seed),
            limits=limits or RateLimits.disabled(),
        )
        executor = Executor(
            client,
            clock=clock,
            rng=random.Random(seed + 1),
            settings=settings or ExecutorSettings(),
            launch_ids=launch_id_factory(seed),
            on_event=record,
        )
        yield World(clock, app, emulator, client, executor, events)


# ------------------------------------------------------------------------------ desired state


def desired(
    *,
    app: str = "web",
    image: str = IMAGE_V1,
    groups: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    **top: Any,
) -> DesiredApp:
    """A desired app: defaults with ``image`` (and ``env``), and ``groups`` (one by default)."""
    config: dict[str, Any] = {"image": image}
    if env:
        config["env"] = env
    return parse_app(
        {
            "app": app,
            "defaults": {"config": config},
            "groups": groups if groups is not None else {"web": {"regions": {"ams": 2, "iad": 1}}},
            **top,
        }
    )


def intervals(w: World, start: tuple[str, str], end: tuple[str, str]) -> list[tuple[float, float]]:
    """Per machine id: (time of its first ``start`` request, time of its last ``end`` one).

    ``start``/``end`` are (method, path regex); the machine id is read from the path.
    """
    begin: dict[str, float] = {}
    finish: dict[str, float] = {}
    for entry in w.emulator.requests():
        match = re.search(r"/machines/([0-9a-f]{14})", entry["path"])
        if match is None:
            continue
        mid = match.group(1)
        if entry["method"] == start[0] and re.search(start[1], entry["path"]):
            begin.setdefault(mid, entry["at"])
        if entry["method"] == end[0] and re.search(end[1], entry["path"]):
            finish[mid] = entry["at"]
    return [(begin[m], finish[m]) for m in begin if m in finish]


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of ``[start, end)`` spans open at one instant."""
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = current = 0
    for _, delta in points:
        current += delta
        peak = max(peak, current)
    return peak
