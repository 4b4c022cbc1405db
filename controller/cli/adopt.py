"""``machine-reconciler adopt DIR --app A [--yes]``: take over unmanaged machines.

Shows what :func:`controller.planning.adopt.match` proposes (which machine fills which slot,
and what the next ``apply`` will change on it), asks like ``apply`` (``yes`` on a terminal,
``--yes`` off one), then adopts each machine on its own:

1. take its lease (:class:`~controller.execution.leasing.Leaser`, the executor's helper: a short
   TTL kept alive while working; someone else's lease is waited for up to ``--lease-wait``,
   never cleared);
2. re-read it: still unmanaged and still at the listed version, else it is left alone;
3. write its own config plus the slot metadata with ``current_version`` and the lease nonce
   (``skip_launch`` for a stopped machine; Fly restarts a running machine on any config
   update, so a started one is waited for until it runs the new version);
4. release the lease (always).

``--output json``: one document on stdout (:mod:`controller.cli.jsonout`, plan's schema): an
``adopt`` record per proposed machine, an ``unmanaged`` one per machine no slot fits, and
``results`` once it ran (``ok``; ``lease_held``; ``requeue`` for a machine that changed or
became managed; ``error``); the text goes to stderr.

Exit codes: 0 every proposed machine adopted (or nothing to adopt); 1 error, or no
confirmation; 4 a machine was left alone because it changed or its lease stayed held.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio

from controller.cli.confirming import add_embedded_flag, add_lease_wait_flag, confirmed
from controller.cli.jsonout import add_output_flag, emit, result_record
from controller.clock import SystemClock
from controller.core.errors import ConfigError, FlyAPIError, VersionConflict
from controller.core.outcomes import Outcome
from controller.execution.leasing import LeaseBusy, Leaser
from controller.execution.operations import to_live_machine
from controller.execution.reconciler import list_live
from controller.execution.rollout import ExecutorSettings
from controller.flyapi import MachinesClient
from controller.model.desired import DesiredApp
from controller.planning.adopt import (
    ADOPT,
    Adoption,
    AdoptionPlan,
    adopted_config,
    adoption_document,
    match,
    render,
)
from controller.planning.plan import SKIP_LAUNCH_STATES
from controller.planning.render import Entry, PlanError, summarise_runs, to_document

__all__ = ["ADOPTED", "add_adopt_parser", "adopt", "adoptable_lines", "adoptable_records"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REFUSED = 4
ADOPTED = "adopted"
_SEVERITY = {EXIT_OK: 0, EXIT_REFUSED: 1, EXIT_ERROR: 2}
WAIT_SECONDS = 60

ClientFactory = Callable[[Sequence[DesiredApp]], AbstractAsyncContextManager[MachinesClient]]


def add_adopt_parser(sub: Any, default_dir: Any) -> None:
    """The ``adopt`` subcommand."""
    adopt_cmd = sub.add_parser(
        "adopt",
        help="take over unmanaged machines (e.g. made by fly deploy) into free slots",
        description="Match machines without reconciler/managed metadata to the free slots of "
        "APP's groups (same config first, then same image), show it, and on confirmation "
        "write the slot metadata under a lease with current_version.",
    )
    adopt_cmd.add_argument("dir", nargs="?", type=type(default_dir), default=default_dir)
    adopt_cmd.add_argument("--app", required=True, help="the app whose machines to adopt")
    adopt_cmd.add_argument("--yes", action="store_true", help="adopt without asking")
    add_lease_wait_flag(adopt_cmd)
    add_output_flag(adopt_cmd)
    add_embedded_flag(adopt_cmd, what="against the in-process emulator (a demonstration; no token)")


def adopt(
    args: argparse.Namespace,
    desired: DesiredApp,
    *,
    client: ClientFactory,
    redact: Callable[[str], str],
) -> int:
    """Run ``adopt`` for one app; the exit code."""
    if args.lease_wait < 0:
        raise ConfigError("--lease-wait must be >= 0")
    as_json = args.output == "json"
    text = sys.stderr if as_json else sys.stdout  # --output json keeps stdout for the document

    async def run() -> int:
        async with client([desired]) as api:
            try:
                live = await list_live(api, desired.app)
            except FlyAPIError as exc:
                message = redact(f"listing machines failed: {exc}")
                print(f"machine-reconciler: error: {desired.app}: {message}", file=sys.stderr)
                if as_json:
                    emit(
                        to_document(
                            [], [PlanError(desired.app, exc.error_class, message, exc.request_id)]
                        )
                    )
                return EXIT_ERROR
            proposal = match(desired, live)
            text.write(render(proposal))
            document = adoption_document(proposal, live)
            if not proposal.adoptions:
                if as_json:
                    emit(document)
                return EXIT_OK
            ask_on = sys.stderr if as_json else None
            question = "Adopt these machines?"
            if not confirmed(yes=args.yes, verb="adopt", question=question, ask_on=ask_on):
                if as_json:
                    emit(document)
                return EXIT_ERROR
            leaser = Leaser(
                api,
                clock=SystemClock(),
                rng=random.Random(),
                policy=ExecutorSettings(lease_wait=args.lease_wait).lease_policy(),
            )
            worst = EXIT_OK
            results = []
            for adoption in proposal.adoptions:
                code, outcome, message = await _adopt_one(api, leaser, desired.app, adoption, args)
                print(redact(f"{desired.app}: {adoption.machine_id} {message}"), file=text)
                worst = max(worst, code, key=_SEVERITY.__getitem__)
                results.append(
                    result_record(
                        app=desired.app,
                        action=ADOPT,
                        machine_id=adoption.machine_id,
                        slot=adoption.slot,
                        group=adoption.group,
                        region=adoption.region,
                        outcome=outcome.value,
                        message=redact(message),
                    )
                )
            if as_json:
                emit(document, results)
            return worst

    return anyio.run(run)


async def _adopt_one(
    api: MachinesClient,
    leaser: Leaser,
    app: str,
    adoption: Adoption,
    args: argparse.Namespace,
) -> tuple[int, Outcome, str]:
    """Write the slot metadata of one machine under its lease, with ``current_version``: the
    exit code, the outcome (for ``--output json``) and the line to print.

    Someone else's lease is waited for at most ``--lease-wait`` (the leaser's policy), never
    cleared.
    """
    try:
        async with leaser.lease(app, adoption.machine_id) as lease:
            machine = to_live_machine(await api.get_machine(app, adoption.machine_id))
            if machine.managed:
                return EXIT_REFUSED, Outcome.REQUEUE, "left alone: it is managed already"
            if machine.version != adoption.version:
                return (
                    EXIT_REFUSED,
                    Outcome.REQUEUE,
                    (
                        f"left alone: it changed since it was listed (version {adoption.version}, "
                        f"now {machine.version})"
                    ),
                )
            started = machine.state not in SKIP_LAUNCH_STATES
            updated = await api.update_machine(
                app,
                machine.id,
                config=adopted_config(machine, adoption),
                current_version=machine.version,
                nonce=lease.nonce,
                skip_launch=not started,
            )
            if started and updated.version:
                await api.wait_machine(
                    app, machine.id, state="started", version=updated.version, timeout=WAIT_SECONDS
                )
            adopted = f"{ADOPTED} as {adoption.slot} (group {adoption.group})"
            return EXIT_OK, Outcome.OK, adopted
    except LeaseBusy as busy:
        holder = busy.last.holder or "someone else"
        return EXIT_REFUSED, Outcome.LEASE_HELD, f"left alone: its lease is held by {holder}"
    except VersionConflict:
        return (
            EXIT_REFUSED,
            Outcome.REQUEUE,
            ("left alone: it changed while being adopted (version conflict)"),
        )
    except FlyAPIError as exc:
        return EXIT_ERROR, Outcome.ERROR, f"failed: {exc}"


# ------------------------------------------------------------------------------ plan's listing


def adoptable_lines(proposals: Sequence[AdoptionPlan], directory: str) -> list[str]:
    """One line per unmanaged machine ``adopt`` would take over (for ``plan``), long runs of
    similar ones counted like the plan's (:func:`controller.planning.render.summarise_runs`)."""
    lines: list[str] = []
    for p in proposals:
        command = f"machine-reconciler adopt {directory} --app {p.app}"
        lines.extend(
            summarise_runs(
                Entry(
                    (a.group, a.region, a.match),
                    [
                        f"{p.app}: unmanaged machine {a.machine_id} (region {a.region}) can be "
                        f"adopted as {a.slot} ({a.match}): {command}"
                    ],
                    _more_adoptable(p.app, a, command),
                )
                for a in p.adoptions
            )
        )
    return lines


def _more_adoptable(app: str, a: Adoption, command: str) -> Callable[[int], str]:
    return lambda n: (
        f"{app}: {n:,} more unmanaged machines in region {a.region} can be adopted into "
        f"group {a.group} ({a.match}): {command}"
    )


def adoptable_records(proposals: Sequence[AdoptionPlan]) -> list[dict[str, Any]]:
    """The same as JSON records (``plan --output json``'s ``adoptable`` key)."""
    return [
        {
            "app": p.app,
            "machine_id": a.machine_id,
            "region": a.region,
            "slot": a.slot,
            "group": a.group,
            "match": a.match,
            "version": a.version,
        }
        for p in proposals
        for a in p.adoptions
    ]
