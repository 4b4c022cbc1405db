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

**Ctrl-C / SIGTERM** drain it as they drain ``apply`` (:mod:`controller.cli.interrupting`):
no new adoption starts, the one in flight finishes within ``--grace``, every lease is released,
``interrupted``, the counts and what is left are printed, exit 130 / 143; a second signal stops
at once (the lease is still released).  An adoption cut short after its metadata was written
is reported adopted; one cut short before is not, and the next ``adopt`` proposes it again if
it is still unmanaged.  Before a machine is worked on (listing, confirmation) SIGTERM ends the
command at once and Ctrl-C is Python's usual ``KeyboardInterrupt``: no lease is held then.

``--output json``: one document on stdout (:mod:`controller.cli.jsonout`, plan's schema): an
``adopt`` record per proposed machine, an ``unmanaged`` one per machine no slot fits, and
``results`` once it ran (``ok``; ``lease_held``; ``requeue`` for a machine that changed or
became managed; ``error``); the text goes to stderr.

Exit codes: 0 every proposed machine adopted (or nothing to adopt); 1 error, or no
confirmation; 4 a machine was left alone because it changed or its lease stayed held;
130 / 143 interrupted.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import anyio

from controller.cli.client import client
from controller.cli.confirming import confirmed
from controller.cli.desired import one_app
from controller.cli.interrupting import announcement, drained
from controller.cli.jsonout import emit, result_record
from controller.cli.oneapp import ClientFactory, OneAppRun, run_one_app
from controller.cli.redacting import REDACTOR
from controller.clock import SystemClock
from controller.core.errors import FlyAPIError, VersionConflict
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

__all__ = ["ADOPTED", "adopt", "adoptable_lines", "adoptable_records", "cmd_adopt"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REFUSED = 4
ADOPTED = "adopted"
_SEVERITY = {EXIT_OK: 0, EXIT_REFUSED: 1, EXIT_ERROR: 2}
WAIT_SECONDS = 60


def cmd_adopt(args: argparse.Namespace) -> int:
    """``adopt``: the exit code (see the module docstring)."""
    return adopt(
        args,
        one_app(args),
        client=lambda apps: client(apps, embedded=args.embedded),
        redact=REDACTOR.redact,
    )


def adopt(
    args: argparse.Namespace,
    desired: DesiredApp,
    *,
    client: ClientFactory,
    redact: Callable[[str], str],
) -> int:
    """Run ``adopt`` for one app; the exit code."""
    return run_one_app(_Adopt, args, desired, client=client, redact=redact)


@dataclass
class _InFlight:
    """The adoption holding its machine's lease; ``written``: its metadata update returned."""

    adoption: Adoption
    written: bool = False


@dataclass
class _Tally:
    """How the adoptions that ran ended, for the summary of an interrupted run."""

    adopted: int = 0
    left_alone: int = 0
    failed: int = 0

    def count(self, outcome: Outcome) -> None:
        if outcome is Outcome.OK:
            self.adopted += 1
        elif outcome is Outcome.ERROR:
            self.failed += 1
        else:
            self.left_alone += 1


class _Adopt(OneAppRun):
    """One ``adopt`` run: list, show, confirm, adopt one machine at a time, report."""

    in_flight: _InFlight | None = None

    async def run(self) -> int:
        app = self.desired.app
        async with self.client([self.desired]) as api:
            try:
                live = await list_live(api, app)
            except FlyAPIError as exc:
                message = self.redact(f"listing machines failed: {exc}")
                print(f"machine-reconciler: error: {app}: {message}", file=sys.stderr)
                if self.json:
                    emit(
                        to_document([], [PlanError(app, exc.error_class, message, exc.request_id)])
                    )
                return EXIT_ERROR
            proposal = match(self.desired, live)
            self.text.write(render(proposal))
            document = adoption_document(proposal, live)
            if not proposal.adoptions:
                if self.json:
                    emit(document)
                return EXIT_OK
            ask_on = sys.stderr if self.json else None
            question = "Adopt these machines?"
            if not confirmed(yes=self.args.yes, verb="adopt", question=question, ask_on=ask_on):
                if self.json:
                    emit(document)
                return EXIT_ERROR
            return await self.take_over(api, proposal, document)

    async def take_over(
        self, api: MachinesClient, proposal: AdoptionPlan, document: dict[str, Any]
    ) -> int:
        """Adopt each proposed machine in turn, under the drain (first signal) and the abort
        (second): a one-token limiter is held while a machine is worked on, so the drain lets
        that one finish within ``--grace`` and starts no other."""
        clock = SystemClock()
        limiter = anyio.CapacityLimiter(1)
        leaser = Leaser(
            api,
            clock=clock,
            rng=random.Random(),
            policy=ExecutorSettings(lease_wait=self.args.lease_wait).lease_policy(),
        )
        worst = EXIT_OK
        results: list[dict[str, Any]] = []
        tally = _Tally()

        async def run_all() -> None:
            nonlocal worst
            for adoption in proposal.adoptions:
                code, outcome, message = await self.adopt_one(
                    api, leaser, adoption, slots=lambda: limiter
                )
                self.in_flight = None
                self.say(f"{self.desired.app}: {adoption.machine_id} {message}")
                worst = max(worst, code, key=_SEVERITY.__getitem__)
                tally.count(outcome)
                results.append(self.record(adoption, outcome, message))

        def announce(grace: float) -> None:
            self.say(announcement(grace))

        await drained(run_all, self.interrupt, limiter=limiter, clock=clock, announce=announce)
        if self.interrupt.interrupted:
            self.report_interrupted(proposal, results, tally)
        if self.json:
            emit(document, results)
        return self.interrupt.exit_code if self.interrupt.interrupted else worst

    def report_interrupted(
        self, proposal: AdoptionPlan, results: list[dict[str, Any]], tally: _Tally
    ) -> None:
        """The end of an interrupted run: the adoption cut short (if any), the counts, and
        what is left."""
        app = self.desired.app
        cut = self.in_flight
        if cut is not None and cut.written:  # its metadata is written: it is managed now
            message = (
                f"{ADOPTED} as {cut.adoption.slot} (group {cut.adoption.group}); interrupted "
                "before it was seen running"
            )
            self.say(f"{app}: {cut.adoption.machine_id} {message}")
            tally.count(Outcome.OK)
            results.append(self.record(cut.adoption, Outcome.OK, message))
        elif cut is not None:
            self.say(
                f"{app}: {cut.adoption.machine_id} interrupted while being adopted (its lease "
                "is released; plan shows whether it is managed now)"
            )
        left = len(proposal.adoptions) - len(results)
        self.say(
            f"Adopt summary (interrupted): {tally.adopted} adopted, {tally.left_alone} left "
            f"alone, {tally.failed} failed, {left} not run"
        )
        self.say(
            f"interrupted: {left} proposed adoption(s) not run; run adopt again to finish "
            "(it proposes only machines still unmanaged)"
        )

    def record(self, adoption: Adoption, outcome: Outcome, message: str) -> dict[str, Any]:
        """The ``results`` record of one adoption."""
        return result_record(
            app=self.desired.app,
            action=ADOPT,
            machine_id=adoption.machine_id,
            slot=adoption.slot,
            group=adoption.group,
            region=adoption.region,
            outcome=outcome.value,
            message=self.redact(message),
        )

    async def adopt_one(
        self,
        api: MachinesClient,
        leaser: Leaser,
        adoption: Adoption,
        *,
        slots: Callable[[], AbstractAsyncContextManager[object]],
    ) -> tuple[int, Outcome, str]:
        """Write the slot metadata of one machine under its lease, with ``current_version``:
        the exit code, the outcome (for ``--output json``) and the line to print.

        Someone else's lease is waited for at most ``--lease-wait`` (the leaser's policy),
        never cleared, and outside ``slots`` (waiting is not work in flight for the drain).
        """
        app = self.desired.app
        try:
            async with leaser.lease(app, adoption.machine_id, slots=slots) as lease:
                self.in_flight = _InFlight(adoption)
                machine = to_live_machine(await api.get_machine(app, adoption.machine_id))
                if machine.managed:
                    return EXIT_REFUSED, Outcome.REQUEUE, "left alone: it is managed already"
                if machine.version != adoption.version:
                    return (
                        EXIT_REFUSED,
                        Outcome.REQUEUE,
                        (
                            "left alone: it changed since it was listed (version "
                            f"{adoption.version}, now {machine.version})"
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
                self.in_flight.written = True
                if started and updated.version:
                    await api.wait_machine(
                        app,
                        machine.id,
                        state="started",
                        version=updated.version,
                        timeout=WAIT_SECONDS,
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
