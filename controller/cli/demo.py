"""The embedded emulator: ``make demo`` and the ``--embedded`` flag of ``plan`` / ``apply``.

``make demo`` = seed a drifted fleet, ``plan``, ``apply``, and a second ``plan`` that shows no
changes, all through the real client over loopback HTTP.

:func:`embedded_emulator` builds the Machines API emulator in-process and seeds it, *through the
API client*, with a fleet that has drifted from the desired state in the three ways operators
meet (a machine on an old image, a slot with no machine, a machine someone created by hand).
:func:`run_demo` serves that emulator on a free loopback port (real HTTP, the same server as
``machine-reconciler emulator``), lists the fleet, prints the plan that brings it back, applies
it and plans again.
No token and no network beyond 127.0.0.1 is involved.

This module composes the emulator with the client, so it sits beside :mod:`controller.cli.commands`
at the top of the import layering; only the CLI imports it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table
from starlette.applications import Starlette

from controller.cli.apply import Reporter, apply_apps, exit_code
from controller.clock import SystemClock
from controller.emulator import Behaviour, EmulatorTransport, build_app, serve_in_thread
from controller.execution.executor import Executor
from controller.execution.reconciler import list_live
from controller.flyapi import Machine, MachinesClient
from controller.loading.loader import load_dir
from controller.model.desired import DesiredApp
from controller.planning.plan import AppPlan, plan, with_launch
from controller.planning.render import render

#: The embedded emulator accepts only this bearer token; it guards nothing real.
EMBEDDED_TOKEN = "embedded-emulator-token"  # noqa: S105 - not a credential
EMBEDDED_URL = "http://127.0.0.1:4280"  # nominal: in-process requests never leave the process
DEMO_ORG = "personal"
#: The apps the demo's seeds describe (the shipped ``desired_state/`` examples).  Only these get a
#: drifted fleet; any other app (a new file) starts empty, so its plan is creates only.
DEMO_APPS = frozenset({"acme-web", "acme-jobs"})

#: Production behaviour with boot latency and checks shortened so a demo takes seconds.
DEMO_BEHAVIOUR = Behaviour(boot_seconds=0.2, stop_seconds=0.1, checks_pass_seconds=0.2)


async def seed_drifted(client: MachinesClient, desired: DesiredApp) -> None:
    """Create the app and a fleet that has drifted from ``desired`` in three ways."""
    await client.create_app(desired.app, DEMO_ORG)
    creates = plan(desired, []).creates
    for index, create in enumerate(creates):
        if index == len(creates) - 1:
            continue  # drift 1: a slot with no machine
        config: dict[str, Any] = with_launch(create.config, f"seed-{desired.app}-{index}")
        if index == 0:  # drift 2: someone deployed an older image out of band
            config = {**config, "image": str(config["image"]).rsplit(":", 1)[0] + ":previous"}
        await client.create_machine(desired.app, config=config, region=create.region)
    if creates:  # drift 3: a machine created by hand, not ours: listed, never touched
        await client.create_machine(
            desired.app,
            config={"image": creates[0].config["image"], "env": {"ROLE": "console"}},
            region=creates[0].region,
        )


async def seed_embedded(client: MachinesClient, desired: DesiredApp) -> None:
    """Seed one app for ``--embedded``: drift for the demo's own apps, an empty app otherwise.

    Inventing drift for a file the seeds do not describe would show updates and unmanaged
    machines nobody made; a new file must plan creates only, as it would on a fresh Fly app.
    """
    if desired.app in DEMO_APPS:
        await seed_drifted(client, desired)
    elif desired.org is None:  # with org: the app stays missing, and the plan creates it
        await client.create_app(desired.app, DEMO_ORG)


async def embedded_emulator(apps: Sequence[DesiredApp]) -> Starlette:
    """An in-process emulator seeded for ``apps`` (see :func:`seed_embedded`)."""
    app = build_app(seed=2026, behaviour=DEMO_BEHAVIOUR, token=EMBEDDED_TOKEN)
    transport = EmulatorTransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=EMBEDDED_URL) as http:
        client = MachinesClient(
            http, token=SecretStr(EMBEDDED_TOKEN), clock=SystemClock(), rng=random.Random()
        )
        for desired in apps:
            await seed_embedded(client, desired)
    return app


def run_demo(directory: Path = Path("desired_state"), *, console: Console | None = None) -> int:
    """Serve the emulator on loopback, seed it, list the fleet and print the plan."""
    out = console if console is not None else Console(width=120)
    loaded = load_dir(directory)
    for error in loaded.errors:
        out.print(f"[red]error[/red] {error}")
    if not loaded.apps:
        out.print(f"[red]no loadable desired-state files in {directory}[/red]")
        return 1
    app = build_app(seed=2026, behaviour=DEMO_BEHAVIOUR, token=EMBEDDED_TOKEN)
    with serve_in_thread(app) as url:
        out.print(f"[bold]Machines API emulator[/bold] serving on {url} (loopback only)\n")
        return anyio.run(_demo, url, list(loaded.apps.values()), out)


async def _demo(url: str, apps: Sequence[DesiredApp], out: Console) -> int:
    async with httpx.AsyncClient(base_url=url) as http:
        clock, rng = SystemClock(), random.Random()
        client = MachinesClient(http, token=SecretStr(EMBEDDED_TOKEN), clock=clock, rng=rng)
        for desired in apps:
            await seed_drifted(client, desired)
        for desired in apps:
            out.print(_fleet_table(desired.app, await client.list_machines(desired.app)))

        out.rule("1. plan: what differs from desired_state/")
        before = [await _plan(client, desired) for desired in apps]
        out.print(render(before), markup=False, highlight=False, soft_wrap=True)

        out.rule("2. apply --yes: leases, current_version, rolling updates, health checks")
        reporter = Reporter(out.file, force_plain=True, show_plan=False)  # shown above
        executor = Executor(client, clock=clock, rng=rng, on_event=reporter.event)
        report = await apply_apps(
            apps, executor=executor, reporter=reporter, confirm=lambda _plans: True
        )
        reporter.summary(report.results, ())
        code = exit_code(report.results)

        out.rule("3. plan again: a fresh apply followed by plan is empty")
        after = [await _plan(client, desired) for desired in apps]
        out.print(render(after), markup=False, highlight=False, soft_wrap=True)
        if any(p.has_changes for p in after):
            out.print("[red]the second plan is not empty: this is a bug[/red]")
            return 1
    return code


async def _plan(client: MachinesClient, desired: DesiredApp) -> AppPlan:
    return plan(desired, await list_live(client, desired.app))


def _fleet_table(app: str, machines: Sequence[Machine]) -> Table:
    title = f"{app}: live machines (listed through the API client)"
    table = Table(title=title, title_justify="left")
    for column in ("id", "region", "state", "slot", "image", "version"):
        table.add_column(column, no_wrap=True)
    for m in sorted(machines, key=lambda m: (m.metadata.get("reconciler/slot", "~"), m.id)):
        table.add_row(
            m.id,
            m.region or "",
            m.state or "",
            m.metadata.get("reconciler/slot", "(unmanaged)"),
            str(m.config.get("image", "")),
            (m.version or "")[:10] + "…",
        )
    return table
