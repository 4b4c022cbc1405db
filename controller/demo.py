"""``machine-reconciler demo``: the whole picture against the embedded emulator, in one command.

It serves the emulator on a free loopback port (real HTTP, the same server as
``machine-reconciler emulator``), seeds it *through the API client* with a fleet that has drifted
from ``desired_state/`` (one machine on an old image, one slot missing, one machine someone
created by hand), then lists the fleet through the client and prints the plan that brings it
back.  No token or network beyond 127.0.0.1 is involved.

This module composes the emulator with the client, so it sits beside :mod:`controller.cli` at the
top of the import layering; nothing else imports it.
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

from controller.clock import SystemClock
from controller.emulator import Behaviour, build_app, serve_in_thread
from controller.flyapi import Machine, MachinesClient
from controller.loader import load_dir
from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp
from controller.plan import AppPlan, plan, with_launch
from controller.render import render

DEMO_TOKEN = "demo-token-not-a-secret"  # noqa: S105 - the emulator accepts only this one
DEMO_ORG = "personal"

#: Production behaviour with boot latency and checks shortened so the demo takes seconds.
DEMO_BEHAVIOUR = Behaviour(boot_seconds=0.2, stop_seconds=0.1, checks_pass_seconds=0.2)


def run_demo(directory: Path = Path("desired_state"), *, console: Console | None = None) -> int:
    """Run the demo; returns a process exit code."""
    out = console if console is not None else Console(width=120)
    loaded = load_dir(directory)
    for error in loaded.errors:
        out.print(f"[red]error[/red] {error}")
    if not loaded.apps:
        out.print(f"[red]no loadable desired-state files in {directory}[/red]")
        return 1
    app = build_app(seed=2026, behaviour=DEMO_BEHAVIOUR, token=DEMO_TOKEN)
    with serve_in_thread(app) as url:
        out.print(f"[bold]Machines API emulator[/bold] serving on {url} (loopback only)\n")
        return anyio.run(_demo, url, list(loaded.apps.values()), out)


async def _demo(url: str, apps: Sequence[DesiredApp], out: Console) -> int:
    async with httpx.AsyncClient(base_url=url) as http:
        client = MachinesClient(
            http, token=SecretStr(DEMO_TOKEN), clock=SystemClock(), rng=random.Random()
        )
        for desired in apps:
            await _seed_drifted(client, desired)
        for desired in apps:
            machines = await client.list_machines(desired.app)
            out.print(_fleet_table(desired.app, machines))
        plans = [
            plan(desired, [_live(m) for m in await client.list_machines(desired.app)])
            for desired in apps
        ]
        out.print(render(plans), markup=False, highlight=False, soft_wrap=True)
    return 0


async def _seed_drifted(client: MachinesClient, desired: DesiredApp) -> None:
    """Create the app and a fleet that has drifted from ``desired`` in three ways."""
    await client.create_app(desired.app, DEMO_ORG)
    creates = plan(desired, []).creates
    for index, create in enumerate(creates):
        if index == len(creates) - 1:
            continue  # drift 1: a slot with no machine
        config: dict[str, Any] = with_launch(create.config, f"demo-{desired.app}-{index}")
        if index == 0:  # drift 2: someone deployed an older image out of band
            config = {**config, "image": str(config["image"]).rsplit(":", 1)[0] + ":previous"}
        await client.create_machine(desired.app, config=config, region=create.region)
    # drift 3: a machine created by hand, not ours: listed, never touched
    first = creates[0].config
    await client.create_machine(
        desired.app, config={"image": first["image"], "env": {"ROLE": "console"}}, region="iad"
    )


def _live(machine: Machine) -> LiveMachine:
    return LiveMachine.from_api(machine.model_dump(mode="json"))


def _fleet_table(app: str, machines: Sequence[Machine]) -> Table:
    table = Table(
        title=f"{app}: live machines (listed through the API client)", title_justify="left"
    )
    for column in ("id", "region", "state", "slot", "image", "version"):
        table.add_column(column)
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


__all__ = ["AppPlan", "run_demo"]
