"""Adoption (Terraform's ``import``): match unmanaged machines to free slots.  Pure.

Machines that ``fly deploy``, ``fly machine run`` or the dashboard made carry no
``reconciler/managed`` metadata: the planner lists them and never touches them (DESIGN.md 3).
``machine-reconciler adopt`` takes them over by writing the slot metadata (``reconciler/managed``,
``group``, ``slot``, ``spec``) into their config; from then on they are ordinary managed machines
and the next ``apply`` brings their config to the group's.

:func:`match` decides which machine fills which slot.  The free slots are exactly the ones
the planner would create machines for (the lowest free slot numbers of each group and region).
A machine can only fill a slot of its own region (a machine never moves).  Candidates, best first:

1. its canonical config equals the group's (adoption changes nothing but metadata);
2. the same image;
3. the same image repository (another tag or digest).

Machines running another image entirely are never proposed.  Ties go to the lower slot, then
the lower machine id: the result is deterministic, whatever the order of the live list.

The ``reconciler/spec`` written is the hash of the machine's own canonical config (what it runs
now), so the next plan reports a group whose config differs as "desired config changed".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.model.actual import (
    GROUP_KEY,
    IDENTITY_KEYS,
    MANAGED_KEY,
    MANAGED_VALUE,
    SLOT_KEY,
    SPEC_KEY,
    LiveMachine,
)
from controller.model.desired import DesiredApp
from controller.planning.normalize import (
    REDACTED,
    FieldChange,
    canonical,
    diff,
    normalize_image,
    passthrough_paths,
    spec_hash,
)
from controller.planning.plan import SKIP_LAUNCH_STATES, AppPlan, plan
from controller.planning.render import (
    Entry,
    change_records,
    machine_record,
    summarise_runs,
    to_document,
)

__all__ = [
    "ADOPT",
    "SAME_CONFIG",
    "SAME_IMAGE",
    "SAME_REPOSITORY",
    "Adoption",
    "AdoptionPlan",
    "adopted_config",
    "adoption_document",
    "match",
    "render",
]

ADOPT = "adopt"
"""The ``action`` of an adoption's record in the JSON document."""
SAME_CONFIG = "same config"
SAME_IMAGE = "same image"
SAME_REPOSITORY = "same image repository"
_RANKS = (SAME_CONFIG, SAME_IMAGE, SAME_REPOSITORY)


@dataclass(frozen=True, slots=True)
class Adoption:
    """One unmanaged machine proposed for one free slot."""

    machine_id: str
    name: str
    region: str
    state: str
    version: str
    group: str
    slot: str
    match: str
    spec: str
    """The ``reconciler/spec`` to write: the hash of the machine's canonical config now."""
    diff: tuple[FieldChange, ...] = field(default=())
    """What the next ``apply`` changes on it (live -> group config); empty for SAME_CONFIG."""

    @property
    def metadata(self) -> dict[str, str]:
        """The identity metadata adoption writes."""
        return {
            MANAGED_KEY: MANAGED_VALUE,
            GROUP_KEY: self.group,
            SLOT_KEY: self.slot,
            SPEC_KEY: self.spec,
        }


@dataclass(frozen=True, slots=True)
class AdoptionPlan:
    """What :func:`match` proposes for one app."""

    app: str
    adoptions: tuple[Adoption, ...]
    unmatched: tuple[str, ...]
    """Unmanaged machine ids no free slot fits (kept unmanaged)."""
    free_slots: int
    """Free slots before adoption."""


def _stripped(config: Mapping[str, Any]) -> dict[str, Any]:
    metadata = config.get("metadata")
    if not isinstance(metadata, Mapping):
        return dict(config)
    return {**config, "metadata": {k: v for k, v in metadata.items() if k not in IDENTITY_KEYS}}


def _repository(image: str) -> str:
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def _rank(live_canon: Mapping[str, Any], target_canon: Mapping[str, Any]) -> str | None:
    if live_canon == target_canon:
        return SAME_CONFIG
    live_image, target_image = live_canon.get("image"), target_canon.get("image")
    if not isinstance(live_image, str) or not isinstance(target_image, str):
        return None
    if normalize_image(live_image) == normalize_image(target_image):
        return SAME_IMAGE
    if _repository(normalize_image(live_image)) == _repository(normalize_image(target_image)):
        return SAME_REPOSITORY
    return None


def match(desired: DesiredApp, live: Sequence[LiveMachine]) -> AdoptionPlan:
    """Propose unmanaged machines of ``live`` for the free slots of ``desired``."""
    full = desired.model_copy(update={"paused": None, "only_groups": None, "detect_only": False})
    free = plan(full, live).creates
    unmanaged = sorted((m for m in live if not m.managed and not m.gone), key=lambda m: m.id)
    targets: dict[str, tuple[dict[str, Any], frozenset[str]]] = {}
    for group in desired.groups:
        extra = passthrough_paths(group.config)
        targets[group.name] = (canonical(group.config.to_wire(), extra=extra), extra)
    candidates: list[tuple[int, int, str, LiveMachine, str, dict[str, Any]]] = []
    for order, slot in enumerate(free):
        target, extra = targets[slot.group]
        for machine in unmanaged:
            if machine.region != slot.region:
                continue
            live_canon = canonical(_stripped(machine.config), extra=extra)
            rank = _rank(live_canon, target)
            if rank is not None:
                candidates.append(
                    (_RANKS.index(rank), order, machine.id, machine, rank, live_canon)
                )
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))
    taken_slots: set[int] = set()
    taken_machines: set[str] = set()
    adoptions: list[tuple[int, Adoption]] = []
    for _, order, machine_id, machine, rank, live_canon in candidates:
        if order in taken_slots or machine_id in taken_machines:
            continue
        taken_slots.add(order)
        taken_machines.add(machine_id)
        slot = free[order]
        target, _extra = targets[slot.group]
        adoptions.append(
            (
                order,
                Adoption(
                    machine_id=machine.id,
                    name=machine.name,
                    region=machine.region,
                    state=machine.state,
                    version=machine.version,
                    group=slot.group,
                    slot=slot.slot,
                    match=rank,
                    spec=spec_hash(live_canon),
                    diff=tuple(diff(live_canon, target)),
                ),
            )
        )
    adoptions.sort(key=lambda pair: pair[0])
    return AdoptionPlan(
        app=desired.app,
        adoptions=tuple(a for _, a in adoptions),
        unmatched=tuple(m.id for m in unmanaged if m.id not in taken_machines),
        free_slots=len(free),
    )


def adopted_config(machine: LiveMachine, adoption: Adoption) -> dict[str, Any]:
    """The machine's own config with the slot metadata added (nothing else changes)."""
    metadata = dict(machine.metadata)
    metadata.update(adoption.metadata)
    return {**machine.config, "metadata": metadata}


def _value(change: FieldChange, value: Any) -> str:
    return REDACTED if change.sensitive else json.dumps(value, sort_keys=True)


def _adoption_entry(a: Adoption) -> Entry:
    lines = [
        f"  = adopt {a.machine_id} {a.name!r} ({a.state}, region {a.region}) as {a.slot} "
        f"(group {a.group}): {a.match}"
    ]
    if a.diff:
        lines.append("      the next apply then changes:")
    for change in a.diff:
        if change.before is None:
            lines.append(f"        + {change.path}: {_value(change, change.after)}")
        elif change.after is None:
            lines.append(f"        - {change.path}: {_value(change, change.before)}")
        elif change.sensitive:
            lines.append(f"        ~ {change.path}: {REDACTED} (changed)")
        else:
            before, after = _value(change, change.before), _value(change, change.after)
            lines.append(f"        ~ {change.path}: {before} -> {after}")
    key = ("adopt", a.group, a.region, a.state, a.match, json.dumps(a.diff, default=str))
    where = f"{a.group}/{a.region}"
    return Entry(key, lines, lambda n: f"  = adopt {n:,} more machines into {where} like the above")


def render(proposal: AdoptionPlan) -> str:
    """What adoption would do, as text (sensitive values print as ``(sensitive)``); long runs
    of similar machines are counted (:func:`controller.planning.render.summarise_runs`)."""
    lines = [f"{proposal.app}: {proposal.free_slots} free slot(s)"]
    lines.extend(summarise_runs(_adoption_entry(a) for a in proposal.adoptions))
    lines.extend(
        summarise_runs(
            Entry(
                "unmatched",
                [f"  unmanaged {machine_id}: no free slot fits it (kept unmanaged)"],
                lambda n: f"  {n:,} more unmanaged machines no free slot fits (kept unmanaged)",
            )
            for machine_id in proposal.unmatched
        )
    )
    if not proposal.adoptions:
        lines.append("  nothing to adopt")
    return "\n".join(lines) + "\n"


def adoption_document(proposal: AdoptionPlan, live: Sequence[LiveMachine]) -> dict[str, Any]:
    """``adopt --output json``: plan's document (the same schema, the same record keys) with
    one ``adopt`` record per proposed machine (``changes``: what the next apply changes on it,
    ``current_version``: the version it is adopted at) and an ``unmanaged`` record per machine
    no free slot fits.  ``summary.adopt`` counts the adoptions."""
    document = to_document(AppPlan(app=proposal.app, actions=()))
    by_id = {m.id: m for m in live}
    document["machines"] = [
        machine_record(
            app=proposal.app,
            action=ADOPT,
            machine_id=a.machine_id,
            slot=a.slot,
            group=a.group,
            region=a.region,
            reason=a.match,
            skip_launch=a.state in SKIP_LAUNCH_STATES,
            current_version=a.version,
            changes=change_records(a.diff),
        )
        for a in proposal.adoptions
    ] + [
        machine_record(
            app=proposal.app,
            action="unmanaged",
            machine_id=machine_id,
            region=by_id[machine_id].region if machine_id in by_id else None,
            reason="no free slot fits it (kept unmanaged)",
        )
        for machine_id in proposal.unmatched
    ]
    adopting = len(proposal.adoptions)
    document["summary"]["adopt"] = adopting
    document["summary"]["text"] = (
        f"Adopt: {adopting} machine(s) into {proposal.free_slots} free slot(s)."
        if adopting
        else "Nothing to adopt."
    )
    document["apps"][0]["status"] = "changes" if adopting else "in_sync"
    return document
