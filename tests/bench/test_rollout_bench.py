"""Benchmark: rolling updates side by side (issue 13, DESIGN.md 11).

Three numbers for the same rollout (every machine changes image) on the emulator:

* **ours**: ``reconcile_app`` through one :class:`~controller.execution.executor.Executor`
  with the default settings (``max_in_flight`` 64, the client's default rate limits), one task
  per app, as ``apply`` runs them;
* **script**: what a careful sequential script does with the same client, one machine at a
  time: lease, update (with ``current_version``; re-read and retry on a 409), wait for
  ``started``, stay up for the smoke period (one ``/wait?state=stopped`` long-poll), release;
* **bound**: ``ceil(N / window) x (restart + smoke)``, where a machine is unavailable for at
  least its restart (stop 1 s + boot 2 s) and the smoke period (10 s), and ``window`` is how
  many may be unavailable at once: the sum of the apps' ``max_unavailable`` windows (0.33 of
  100 = 33 per app), capped by ``max_in_flight``.

Sizes: 100 machines (one app) and 1,000 (ten apps of 100), each with 0 % and 20 % conflicts
(an external writer bumps the machine's version between our read and our write).

**Time.**  The emulator and the controller share one :class:`~controller.testing.FakeClock`:
virtual time that jumps ahead whenever every task waits.  Fly's own timings apply unchanged
(stop 1 s, boot 2 s, smoke 10 s, 100 ms per request, 1 action/s per machine, whole-second
``/wait`` timeouts), the numbers are reproducible to the millisecond, and a 13,000-second
sequential script costs seconds of CPU.  What virtual time does not show is our own CPU time
(it does not advance while Python computes); the real seconds each run took are printed too.

Asserted: ours/bound <= 1.2; at 1,000 machines ours is >= 10x faster than the script; API
calls within 1.25x of the minimum (lease, update, wait, read, release per machine and one list
per app: 5 N + apps); with conflicts within 1.5x of the clean time, no lost update (every machine
ends on the new image, at its newest version) and no duplicate (one machine per slot).

Run by ``make bench`` only (marker ``bench``).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from pydantic import SecretStr

from controller.core.errors import VersionConflict, WaitTimeout
from controller.emulator import Behaviour, EmulatorTransport, build_app
from controller.execution.executor import Executor, ExecutorSettings
from controller.execution.reconciler import reconcile_app
from controller.flyapi import MachinesClient, RateLimits
from controller.model.desired import DesiredApp, parse_app
from controller.planning.plan import plan, with_launch
from controller.testing import FakeClock, new_event_loop

pytestmark = pytest.mark.bench

PER_APP = 100
MAX_UNAVAILABLE = 0.33
STOP, BOOT, SMOKE = 1.0, 2.0, 10.0
LATENCY = 0.1
TOKEN = "bench-token"
SETTINGS = ExecutorSettings()  # the defaults: max_in_flight 512
#: anyio.run outside pytest-asyncio: run on the loop on which the FakeClock jumps when all wait.
AUTOJUMP = {"loop_factory": new_event_loop}


def desired_app(index: int, tag: str) -> DesiredApp:
    """One app of PER_APP machines in two regions, no checks: the smoke period gates."""
    return parse_app(
        {
            "app": f"bench-{index:02d}",
            "defaults": {"config": {"image": f"registry.fly.io/bench:{tag}"}},
            "groups": {
                "web": {
                    "regions": {"ams": PER_APP // 2, "iad": PER_APP - PER_APP // 2},
                    "update": {"max_unavailable": MAX_UNAVAILABLE, "smoke_period": SMOKE},
                }
            },
        }
    )


def seeded_emulator(apps: int, clock: FakeClock) -> Any:
    """The emulator with every app converged on image v1 (seeded directly: not timed)."""
    behaviour = Behaviour(
        stop_seconds=STOP,
        boot_seconds=BOOT,
        request_latency_seconds=LATENCY,
        # /wait answers at the transition itself; the poll only notices outside changes.
        wait_poll_seconds=0.5,
        org_machine_limit=apps * PER_APP * 2,
    )
    app = build_app(clock=clock, seed=1, behaviour=behaviour, token=TOKEN)
    fixtures: dict[str, list[dict[str, Any]]] = {"apps": [], "machines": []}
    for index in range(apps):
        desired = desired_app(index, "v1")
        fixtures["apps"].append({"name": desired.app})
        for n, create in enumerate(plan(desired, []).creates):
            config = with_launch(create.config, f"seed-{index}-{n}")
            fixtures["machines"].append(
                {"app": desired.app, "region": create.region, "config": config}
            )
    app.state.emulator.seed_fixtures(fixtures)
    return app


def add_conflicts(state: Any, apps: int, share: float) -> int:
    """An external version bump just before our update of ``share`` of the machines."""
    rng = random.Random(7)
    bumped = 0
    for index in range(apps):
        for machine in state.machines(f"bench-{index:02d}"):
            if rng.random() < share:
                bumped += 1
                state.external_writer(
                    {
                        "kind": "bump_version",
                        "app": f"bench-{index:02d}",
                        "machine_id": machine["id"],
                        "on": "next_update",
                    }
                )
    return bumped


@dataclass
class Run:
    """One measured rollout."""

    seconds: float
    """Virtual (Fly) seconds from the first call to the last."""
    real: float
    """Real seconds the run took on this machine."""
    machines: int
    calls: int
    calls_by: Counter[str]
    lost: int
    duplicates: int
    not_ok: Counter[str]


def client_for(app: Any, clock: FakeClock, http: httpx.AsyncClient) -> MachinesClient:
    return MachinesClient(
        http, token=SecretStr(TOKEN), clock=clock, rng=random.Random(3), limits=RateLimits()
    )


async def ours(apps: int, share: float) -> Run:
    """Roll every app from v1 to v2 with the executor."""
    clock = FakeClock()
    app = seeded_emulator(apps, clock)
    add_conflicts(app.state.emulator, apps, share)
    results: dict[int, Any] = {}
    http = httpx.AsyncClient(transport=EmulatorTransport(app), base_url="http://127.0.0.1:4280")
    async with http:
        client = client_for(app, clock, http)
        executor = Executor(client, clock=clock, rng=random.Random(5), settings=SETTINGS)
        real, began = time.perf_counter(), clock.monotonic()
        async with anyio.create_task_group() as tg:
            for index in range(apps):

                async def one(i: int = index) -> None:
                    results[i] = await reconcile_app(desired_app(i, "v2"), executor=executor)

                tg.start_soon(one)
        seconds, real = clock.monotonic() - began, time.perf_counter() - real
    not_ok = Counter(r.outcome.value for res in results.values() for r in res.results if not r.done)
    return measured(app, apps, seconds, real, not_ok)


async def script(apps: int, share: float, sample: int | None = None) -> Run:
    """The sequential script: one machine at a time (the first ``sample`` of each app)."""
    clock = FakeClock()
    app = seeded_emulator(apps, clock)
    state = app.state.emulator
    add_conflicts(state, apps, share)
    http = httpx.AsyncClient(transport=EmulatorTransport(app), base_url="http://127.0.0.1:4280")
    async with http:
        client = client_for(app, clock, http)
        real, began = time.perf_counter(), clock.monotonic()
        for index in range(apps):
            name = f"bench-{index:02d}"
            machines = await client.list_machines(name)
            for machine in machines[:sample]:
                lease = await client.acquire_lease(name, machine.id, ttl=30)
                assert lease.nonce is not None
                config = {**machine.config, "image": "registry.fly.io/bench:v2"}
                version = machine.version
                for _ in range(5):
                    try:
                        updated = await client.update_machine(
                            name,
                            machine.id,
                            config=config,
                            current_version=version,
                            nonce=lease.nonce,
                        )
                        break
                    except VersionConflict:
                        fresh = await client.get_machine(name, machine.id)
                        config = {**fresh.config, "image": "registry.fly.io/bench:v2"}
                        version = fresh.version
                await client.wait_machine(
                    name, machine.id, state="started", version=updated.version, timeout=60
                )
                # The smoke period: it must not stop within SMOKE seconds (408 = stayed up).
                with pytest.raises(WaitTimeout):
                    await client.wait_machine(
                        name,
                        machine.id,
                        state="stopped",
                        version=updated.version,
                        timeout=SMOKE,
                    )
                await client.release_lease(name, machine.id, nonce=lease.nonce)
        seconds, real = clock.monotonic() - began, time.perf_counter() - real
    run = measured(app, apps, seconds, real, Counter())
    if sample is not None:
        run.machines = apps * sample
    return run


def measured(app: Any, apps: int, seconds: float, real: float, not_ok: Counter[str]) -> Run:
    """Calls from the emulator's request log; lost updates and duplicates from its store."""
    state = app.state.emulator
    log = [e for e in state.requests() if e["path"].startswith("/v1/")]
    assert len(log) < 20_000, "the emulator's request log overflowed"
    calls_by: Counter[str] = Counter(f"{e['method']} {_kind(e['path'])}" for e in log)
    lost = duplicates = 0
    for index in range(apps):
        slots: Counter[str] = Counter()
        for machine in state.machines(f"bench-{index:02d}"):
            if machine["state"] == "destroyed":
                continue
            slots[machine["config"]["metadata"]["reconciler/slot"]] += 1
            if machine["config"]["image"] != "registry.fly.io/bench:v2":
                lost += 1
        duplicates += sum(n - 1 for n in slots.values())
    return Run(seconds, real, apps * PER_APP, len(log), calls_by, lost, duplicates, not_ok)


def _kind(path: str) -> str:
    parts = path.strip("/").split("/")  # v1 apps <app> machines [<id> [<verb>]]
    return "/".join(["machines", *(["<id>"] if len(parts) > 4 else []), *parts[5:6]])


def bound(apps: int) -> float:
    """``ceil(N / window) x (restart + smoke)`` (see the module docstring)."""
    window = min(apps * math.ceil(MAX_UNAVAILABLE * PER_APP), SETTINGS.max_in_flight)
    return math.ceil(apps * PER_APP / window) * (STOP + BOOT + SMOKE)


def minimum_calls(apps: int) -> int:
    """Lease, update, wait, read, release per machine, plus one list per app."""
    return 5 * apps * PER_APP + apps


ROWS: list[str] = []


def row(apps: int, share: float, mine: Run, seq: Run, clean: Run | None) -> None:
    n = apps * PER_APP
    seq_full = seq.seconds * n / seq.machines
    sampled = "" if seq.machines == n else f" (from {seq.machines})"
    vs_clean = f"{mine.seconds / clean.seconds:.2f}" if clean is not None else "-"
    ROWS.append(
        f"| {n:>5} | {share:>4.0%} | {mine.seconds:>7.1f} s | {bound(apps):>5.0f} s "
        f"| {mine.seconds / bound(apps):>4.2f} | {seq_full:>8.0f} s{sampled} "
        f"| {seq_full / mine.seconds:>5.1f}x | {mine.calls / n:.2f} "
        f"({mine.calls / minimum_calls(apps):.2f}x min) | {vs_clean} "
        f"| {mine.lost} / {mine.duplicates} | {mine.real:.0f} s |"
    )


def print_table() -> None:
    print(
        "\n| machines | conflicts | ours | bound | ours/bound | sequential script "
        "| script/ours | calls per machine | vs clean | lost / dup | real time of ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for line in ROWS:
        print(line)


def check(apps: int, mine: Run, seq: Run, clean: Run | None) -> None:
    n = apps * PER_APP
    assert mine.not_ok == Counter(), mine.not_ok
    assert mine.lost == 0, "lost updates"
    assert mine.duplicates == 0, "duplicate machines"
    assert seq.lost == 0 or seq.machines < n
    assert mine.seconds / bound(apps) <= 1.2, (mine.seconds, bound(apps))
    if clean is None:
        assert mine.calls <= 1.25 * minimum_calls(apps), mine.calls_by
    else:
        assert mine.seconds <= 1.5 * clean.seconds, (mine.seconds, clean.seconds)
    if n >= 1000:
        assert seq.seconds * n / seq.machines >= 10 * mine.seconds


@pytest.mark.timeout(1800)
def test_rollout_side_by_side() -> None:
    """100 and 1,000 machines, 0 % and 20 % conflicts: ours vs the script vs the bound."""
    for apps in (1, 10):
        clean: Run | None = None
        for share in (0.0, 0.2):
            mine = anyio.run(ours, apps, share, backend_options=AUTOJUMP)
            # The script on 1,000 machines is measured on 20 per app and scaled linearly
            # (it is strictly sequential: each machine costs the same).
            seq = anyio.run(
                script, apps, share, None if apps == 1 else 20, backend_options=AUTOJUMP
            )
            print(f"\n{apps * PER_APP} machines, {share:.0%} conflicts: ours {mine}")
            row(apps, share, mine, seq, clean)
            check(apps, mine, seq, clean)
            clean = clean or mine
    print_table()
