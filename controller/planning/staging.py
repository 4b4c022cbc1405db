"""Staged creates, the pure half: which plans are staged, and what is left of one once a
confirming listing came back (DESIGN.md 3).

Fly has answered the machine list with an empty array for apps that had machines, and tools
then created a duplicate for every slot (FLY_API.md 1.1).  A list with no managed machine looks
exactly like a new app, and a one-shot ``apply`` has no earlier pass to compare it with.  So a
plan made from such a list is not applied at once: the executor creates **one** machine first
(the *canary*, the plan's first create), lists again, and goes on only if that listing shows the
canary (:mod:`controller.execution.staging` does the I/O).  A list that leaves out a machine Fly
has just confirmed creating cannot be trusted to say which slots are free.

:func:`staged` says whether a plan is applied that way; :func:`confirm` reads the confirming
listing: whether it shows the canary, which of the plan's other creates still have a free slot,
which slots a listed machine holds after all (the first list left it out), and whether the canary
itself now duplicates a machine the first list left out (it is then destroyed: the canary, never
the machine that was there first).  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from controller.model.actual import LiveMachine, format_slot, parse_slot
from controller.planning.plan import AppPlan, Create, Destroy

__all__ = ["Confirmation", "Taken", "confirm", "staged"]


def staged(plan: AppPlan) -> bool:
    """True when ``plan`` creates machines from a listing that showed no managed machine.

    Such a plan holds creates only (a listing without managed machines gives nothing to update
    or destroy).  A plan that creates the app first is not staged: the list answered 404, the
    app does not exist, so it has no machine to miss.  Refused, detect-only and paused plans
    create nothing.
    """
    return (
        plan.managed_count == 0
        and plan.create_app is None
        and plan.refused is None
        and not plan.needs_relist
        and bool(plan.creates)
    )


@dataclass(frozen=True, slots=True)
class Taken:
    """A planned create whose slot a listed machine holds: the first list left it out."""

    create: Create
    machine_id: str


@dataclass(frozen=True, slots=True)
class Confirmation:
    """What a confirming listing says about a staged plan (see :func:`confirm`)."""

    listed: bool
    """The listing shows the canary.  When False the rest is empty: nothing is trusted."""
    rest: tuple[Create, ...] = ()
    """The plan's other creates whose slot is still free, in plan order: create them."""
    taken: tuple[Taken, ...] = ()
    """The plan's other creates whose slot a listed machine holds: not created."""
    duplicate: Destroy | None = None
    """Destroy the canary: another managed machine holds its slot."""
    managed: int = 0
    """Managed machines in the listing, the canary included."""


def _slots(live: Sequence[LiveMachine]) -> dict[str, list[str]]:
    """Machine ids per slot, for the managed machines whose slot metadata is consistent (the
    same rule as the planner's: an inconsistent one is an orphan and holds no slot)."""
    held: dict[str, list[str]] = {}
    for machine in live:
        if machine.gone or not machine.managed:
            continue
        slot = parse_slot(machine.slot)
        if slot is None or slot.group != machine.group or slot.region != machine.region:
            continue
        held.setdefault(format_slot(slot.group, slot.region, slot.index), []).append(machine.id)
    return held


def confirm(
    plan: AppPlan,
    canary: Create,
    machine_id: str,
    live: Sequence[LiveMachine],
    *,
    settled: Collection[str] = (),
) -> Confirmation:
    """Read the confirming listing ``live`` of a staged ``plan`` whose ``canary`` create made
    machine ``machine_id``.

    ``settled`` are the slots of creates that already ended (earlier canaries that made no
    machine): they are neither in ``rest`` nor in ``taken``.
    """
    if not any(m.id == machine_id and not m.gone for m in live):
        return Confirmation(listed=False)
    held = _slots(live)
    others = sorted(i for i in held.get(canary.slot, []) if i != machine_id)
    duplicate = None
    if others:
        duplicate = Destroy(
            machine_id,
            canary.slot,
            canary.group,
            canary.region,
            f"duplicate of {canary.slot} (keeping {others[0]}): created because the first "
            "machine list showed no managed machine",
        )
    rest: list[Create] = []
    taken: list[Taken] = []
    for create in plan.creates:
        if create.slot == canary.slot or create.slot in settled:
            continue
        holders = sorted(held.get(create.slot, []))
        if holders:
            taken.append(Taken(create, holders[0]))
        else:
            rest.append(create)
    managed = sum(1 for m in live if m.managed and not m.gone)
    return Confirmation(True, tuple(rest), tuple(taken), duplicate, managed)
