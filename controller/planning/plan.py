"""The planner: ``plan(desired, live) -> AppPlan``, a pure and deterministic diff.

No I/O, no clock, no randomness, no logging: the same inputs give the same plan, whatever the
order of the live list.  The executor applies a plan; it never decides *what* to do.

**Identity is the slot** (DESIGN.md section 3), stored in ``config.metadata``
(keys in :mod:`controller.model.actual`): ``reconciler/slot = <group>-<region>-<n>`` with ``n``
counting from 0.  Machines without ``reconciler/managed=true`` are *unmanaged*: listed in
``AppPlan.unmanaged`` and never part of an action.

Per group and region, with ``want`` machines desired:

* the ``want`` lowest existing slots are kept (compared, then updated or left alone);
* existing slots above them are destroyed, highest slots first to go (scale down);
* missing machines are created in the lowest free slot numbers (so a lost ``web-ams-1`` comes
  back as ``web-ams-1``, and scaling never renumbers a live machine);
* several machines claiming one slot keep the best (started first, then the oldest
  ``created_at``, then the lowest id) and the others are destroyed as duplicates.  The oldest,
  because a duplicate is the accident (a create whose answer was lost, a staged machine whose
  destroy failed): the machine that was there first is the one serving, and with
  ``prune_volumes`` its volume would go with it.

Managed machines of undeclared groups, or with unparsable or inconsistent slot metadata, are
*orphans*: destroyed when ``prune`` is on, otherwise only reported.

**Comparison** uses :func:`controller.planning.normalize.canonical` on both sides.  For a kept
machine:

* canonical forms equal -> :class:`NoOp` (differences Fly makes, "noise", are not drift);
* otherwise :class:`Update`, its ``drift`` telling apart *why*, from the stored
  ``reconciler/spec`` hash (the hash of the canonical desired config last applied):
  desired hash != stored (the file changed), hash of the canonical live config != stored
  (someone changed the machine outside the reconciler), or both.

**Safety** (never raised, reported as ``AppPlan.refused``; a refused plan must not be run):
destroying more than ``max_destroy`` of the app's managed machines, or leaving none unless
``allow_empty`` (which then lifts the budget: emptying the app was asked for), or creating
more than ``max_create`` machines (a typo such as ``ams: 10000`` must not start 10,000 creates).
**Suspicious list**: when ``previous_managed_count`` (last pass) is given and the managed
machines listed now are fewer than half of it (an empty list included), a plan creating more
than ``relist_threshold`` machines (default 0: any create) sets ``needs_relist``; the executor
re-lists, re-plans with ``previous_managed_count=None`` and only then creates.

``detect_only`` apps get :class:`DriftReport` entries instead of mutating actions.

**Targeting and pausing**: a :class:`DesiredApp` with ``only_groups`` (``--group``) keeps only the
actions of those groups (an orphan counts for the group its metadata names), so the machines of
every other group are left alone, whatever ``prune`` says; the safety budget counts what is
left.  A ``paused`` app gets an empty plan with ``AppPlan.paused`` saying why (its unmanaged
machines are still listed).

Create and Update carry the full request config, identity metadata included; configs of one
group share their nested structure, so treat them as read-only.  A create's
``reconciler/launch`` tag is a fresh uuid only the executor can make: it calls
:func:`with_launch` on ``Create.config``.  Updates keep the machine's existing launch tag and
Fly-owned ``fly_*`` metadata.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar

from controller.model.actual import (
    GROUP_KEY,
    LAUNCH_KEY,
    MANAGED_KEY,
    MANAGED_VALUE,
    RECONCILER_PREFIX,
    RESTART_KEY,
    SLOT_KEY,
    SPEC_KEY,
    LiveMachine,
    format_slot,
    parse_slot,
)
from controller.model.desired import FLY_METADATA_PREFIX, DesiredApp, DesiredGroup, VolumeMount
from controller.planning.normalize import FieldChange, canonical, diff, passthrough_paths, spec_hash

__all__ = [
    "RELIST_SHRINK_RATIO",
    "RELIST_THRESHOLD",
    "SKIP_LAUNCH_STATES",
    "Action",
    "AppPlan",
    "Create",
    "Destroy",
    "DriftKind",
    "DriftReport",
    "NoOp",
    "Orphan",
    "Refused",
    "Restart",
    "Start",
    "Stop",
    "Transition",
    "Unmanaged",
    "Update",
    "plan",
    "with_launch",
]

SKIP_LAUNCH_STATES = frozenset({"stopped", "suspended", "created"})
"""Updating a machine in these states keeps it that way (``skip_launch``), e.g. autostop fleets."""
RELIST_SHRINK_RATIO = 0.5
"""A live managed list below this fraction of the previous pass's count is suspicious."""
RELIST_THRESHOLD = 0
"""A suspicious list plus more than this many creates -> ``needs_relist``."""


class DriftKind(StrEnum):
    """Why a machine differs from its desired state."""

    SPEC_CHANGED = "spec_changed"
    """The desired config changed since the last apply (the file changed)."""
    OUT_OF_BAND = "out_of_band"
    """The machine changed outside the reconciler (e.g. ``fly machine update``)."""
    SPEC_CHANGED_AND_OUT_OF_BAND = "spec_changed+out_of_band"
    """Both of the above."""
    MISSING = "missing"
    """A desired slot has no machine."""
    EXTRA = "extra"
    """A managed machine that should not exist (scale down, duplicate, pruned orphan)."""
    RUN_STATE = "run_state"
    """The machine is started in a ``state: stopped`` group, or stopped in a ``started`` one."""


# ------------------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class Create:
    """Create a machine for an empty slot (the executor adds the launch tag)."""

    slot: str
    group: str
    region: str
    config: Mapping[str, Any] = field(repr=False)
    diff: tuple[FieldChange, ...] = ()
    reason: str = "slot has no machine"
    skip_launch: bool = False
    """Create it without booting it (``state: stopped``)."""
    mounts: tuple[VolumeMount, ...] = ()
    """Volumes to find (unattached, same name and region) or make, and mount at create."""
    kind: ClassVar[str] = "create"
    machine_id: ClassVar[None] = None


@dataclass(frozen=True, slots=True)
class Update:
    """Replace a machine's config (full replacement, guarded by ``current_version``)."""

    machine_id: str
    slot: str
    group: str
    region: str
    current_version: str
    config: Mapping[str, Any] = field(repr=False)
    diff: tuple[FieldChange, ...]
    reason: str
    skip_launch: bool
    drift: DriftKind
    image_digest: str | None = None
    """The digest the machine runs now, when Fly resolved one (shown beside the image)."""
    kind: ClassVar[str] = "update"


@dataclass(frozen=True, slots=True)
class Destroy:
    """Destroy a managed machine (scale down, duplicate, or pruned orphan)."""

    machine_id: str
    slot: str | None
    group: str | None
    region: str
    reason: str
    volumes: tuple[str, ...] = ()
    """Volume ids to destroy after the machine (``prune_volumes: true``), else none."""
    kind: ClassVar[str] = "destroy"


@dataclass(frozen=True, slots=True)
class NoOp:
    """A machine that is in sync.  ``stale_spec``: its ``reconciler/spec`` tag is outdated
    although the config matches (the executor may refresh the tag through the metadata API)."""

    machine_id: str
    slot: str
    group: str
    region: str
    reason: str
    stale_spec: bool = False
    image_digest: str | None = None
    """The digest the machine runs, when Fly resolved one: a plan that says "in sync" for a
    moving tag shows what actually runs."""
    kind: ClassVar[str] = "noop"


@dataclass(frozen=True, slots=True)
class Start:
    """Start a stopped machine of a ``state: started`` group (under its lease, health-gated).
    ``generation``: the restart generation to record afterwards (a start is a fresh boot)."""

    machine_id: str
    slot: str
    group: str
    region: str
    current_version: str
    reason: str
    generation: str | None = None
    kind: ClassVar[str] = "start"


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop a running machine of a ``state: stopped`` group (under its lease)."""

    machine_id: str
    slot: str
    group: str
    region: str
    current_version: str
    reason: str
    generation: str | None = None
    kind: ClassVar[str] = "stop"


@dataclass(frozen=True, slots=True)
class Restart:
    """Restart a machine whose group's ``restart_generation`` changed (in the group's window,
    health-gated), then record ``generation`` in its metadata.  A machine that is not
    ``running`` is not restarted: only the generation is recorded."""

    machine_id: str
    slot: str
    group: str
    region: str
    current_version: str
    reason: str
    generation: str | None = None
    running: bool = True
    kind: ClassVar[str] = "restart"


Transition = Start | Stop | Restart
"""Actions that change a machine's run state, never its config."""

Action = Create | Update | Destroy | NoOp | Start | Stop | Restart


@dataclass(frozen=True, slots=True)
class Unmanaged:
    """A machine without ``reconciler/managed=true``: never touched."""

    machine_id: str
    name: str
    region: str
    state: str


@dataclass(frozen=True, slots=True)
class Orphan:
    """A managed machine no group claims, kept because ``prune`` is off."""

    machine_id: str
    slot: str | None
    group: str | None
    region: str
    reason: str


@dataclass(frozen=True, slots=True)
class DriftReport:
    """What a ``detect_only`` app would change, reported instead of done."""

    kind: DriftKind
    slot: str | None
    group: str | None
    region: str
    machine_id: str | None
    reason: str
    diff: tuple[FieldChange, ...] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """The plan broke a safety rule and must not be executed."""

    reason: str


@dataclass(frozen=True, slots=True)
class AppPlan:
    """Everything the planner decided for one app."""

    app: str
    actions: tuple[Action, ...]
    unmanaged: tuple[Unmanaged, ...] = ()
    orphans: tuple[Orphan, ...] = ()
    drift: tuple[DriftReport, ...] = ()
    refused: Refused | None = None
    needs_relist: bool = False
    detect_only: bool = False
    managed_count: int = 0
    spec_hashes: tuple[tuple[str, str], ...] = ()
    """(group, hash of its canonical desired config), in file order."""
    source: str | None = None
    paused: str | None = None
    """Why nothing was planned (the app is paused), or None."""
    create_app: str | None = None
    """The org slug the missing app is created in before anything else (``+ create app``)."""

    @property
    def creates(self) -> tuple[Create, ...]:
        """The create actions, in plan order."""
        return tuple(a for a in self.actions if isinstance(a, Create))

    @property
    def updates(self) -> tuple[Update, ...]:
        """The update actions, in plan order."""
        return tuple(a for a in self.actions if isinstance(a, Update))

    @property
    def destroys(self) -> tuple[Destroy, ...]:
        """The destroy actions, in plan order."""
        return tuple(a for a in self.actions if isinstance(a, Destroy))

    @property
    def transitions(self) -> tuple[Transition, ...]:
        """The start, stop and restart actions, in plan order."""
        return tuple(a for a in self.actions if isinstance(a, Start | Stop | Restart))

    @property
    def changes(self) -> tuple[Create | Update | Destroy | Transition, ...]:
        """Every mutating action, in plan order."""
        return tuple(a for a in self.actions if not isinstance(a, NoOp))

    @property
    def has_changes(self) -> bool:
        """Anything to create, update or destroy (refused or not)."""
        return self.create_app is not None or any(not isinstance(a, NoOp) for a in self.actions)


def with_launch(config: Mapping[str, Any], launch_id: str) -> dict[str, Any]:
    """``config`` with ``reconciler/launch`` set: the executor's create idempotency tag."""
    metadata = dict(config.get("metadata") or {})
    metadata[LAUNCH_KEY] = launch_id
    return {**config, "metadata": metadata}


# ------------------------------------------------------------------------------ planning


@dataclass(slots=True)
class _Target:
    """A group's desired config, computed once per plan."""

    group: DesiredGroup
    wire: dict[str, Any]
    wire_body: dict[str, Any]
    user_metadata: dict[str, str]
    extra: frozenset[str]
    canonical: dict[str, Any]
    hash: str
    create_diff: tuple[FieldChange, ...]

    @classmethod
    def of(cls, group: DesiredGroup) -> _Target:
        wire = group.config.to_wire()
        extra = passthrough_paths(group.config)
        canon = canonical(wire, extra=extra)
        return cls(
            group=group,
            wire=wire,
            wire_body={k: v for k, v in wire.items() if k != "metadata"},
            user_metadata=dict(wire.get("metadata") or {}),
            extra=extra,
            canonical=canon,
            hash=spec_hash(canon),
            create_diff=tuple(diff({}, wire, shown=group.shown_env)),
        )

    def request(self, slot: str, live: LiveMachine | None = None) -> dict[str, Any]:
        """The full config for a create (``live`` None) or an update of ``live``."""
        metadata: dict[str, str] = {}
        if live is not None:  # keep what Fly owns, and the create's idempotency tag
            metadata.update(
                (k, v) for k, v in live.metadata.items() if k.startswith(FLY_METADATA_PREFIX)
            )
        metadata.update(self.user_metadata)
        metadata[MANAGED_KEY] = MANAGED_VALUE
        metadata[GROUP_KEY] = self.group.name
        metadata[SLOT_KEY] = slot
        metadata[SPEC_KEY] = self.hash
        if self.group.restart_generation is not None:
            metadata[RESTART_KEY] = str(self.group.restart_generation)
        if live is not None and live.launch:
            metadata[LAUNCH_KEY] = live.launch
        if live is not None and self.group.mounts and live.config.get("mounts"):
            # the attached volume stays: an update without it would detach it
            return {**self.wire, "mounts": live.config["mounts"], "metadata": metadata}
        return {**self.wire, "metadata": metadata}


@dataclass(slots=True)
class _LiveView:
    """A canonical live config and what was derived from it (shared by identical configs)."""

    canonical: dict[str, Any]
    hash: str | None = None
    diffs: dict[int, tuple[FieldChange, ...]] = field(default_factory=dict)

    def spec_hash(self) -> str:
        if self.hash is None:
            self.hash = spec_hash(self.canonical)
        return self.hash

    def diff_to(self, target: _Target) -> tuple[FieldChange, ...]:
        found = self.diffs.get(id(target))
        if found is None:
            shown = target.group.shown_env
            found = self.diffs[id(target)] = tuple(
                diff(self.canonical, target.canonical, shown=shown)
            )
        return found


class _Canonicalizer:
    """``canonical`` of live configs, memoised for one plan: the configs of a group usually
    differ only in identity metadata, so most machines are a cache hit."""

    def __init__(self) -> None:
        self._cache: dict[tuple[frozenset[str], str], _LiveView] = {}

    def __call__(self, config: Mapping[str, Any], extra: frozenset[str]) -> _LiveView:
        key = (extra, repr(config))  # equal reprs imply equal JSON data; a miss costs only time
        view = self._cache.get(key)
        if view is None:
            view = self._cache[key] = _LiveView(canonical(config, extra=extra))
        return view


def _identity_stripped(config: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = config.get("metadata")
    if not isinstance(metadata, Mapping) or not any(k in metadata for k in _VOLATILE_KEYS):
        return config
    kept = {k: v for k, v in metadata.items() if k not in _VOLATILE_KEYS}
    return {**config, "metadata": kept}


_VOLATILE_KEYS = (SLOT_KEY, LAUNCH_KEY, SPEC_KEY, GROUP_KEY, MANAGED_KEY, RESTART_KEY)


def _best_first(machines: list[LiveMachine]) -> list[LiveMachine]:
    """Duplicates of one slot, the one to keep first: started, then oldest (an unknown
    ``created_at`` counts as newest), then lowest id."""
    return sorted(
        machines, key=lambda m: (m.state != "started", not m.created_at, m.created_at, m.id)
    )


_RUNNING_STATES = frozenset({"started", "starting"})


def _run_state(target: _Target, slot: str, machine: LiveMachine, noop: NoOp) -> Action:
    """A machine whose config is in sync: start, stop or restart it when its group asks."""
    group = target.group
    wanted = None if group.restart_generation is None else str(group.restart_generation)
    stale = wanted if wanted is not None and machine.metadata.get(RESTART_KEY) != wanted else None
    where = (machine.id, slot, group.name, machine.region, machine.version)
    if group.state == "stopped" and machine.state in _RUNNING_STATES:
        return Stop(*where, f"group {group.name} is declared stopped", stale)
    if group.state == "started" and machine.state in SKIP_LAUNCH_STATES:
        return Start(*where, f"group {group.name} is declared started ({machine.state})", stale)
    if stale is not None:
        before = machine.metadata.get(RESTART_KEY) or "none"
        running = machine.state in _RUNNING_STATES
        reason = f"restart_generation {before} -> {stale}"
        if not running:
            reason += f" ({machine.state}: recorded, not restarted)"
        return Restart(*where, reason, stale, running)
    return noop


def _compare(target: _Target, slot: str, machine: LiveMachine, canon: _Canonicalizer) -> Action:
    config = _identity_stripped(machine.config)
    if target.group.mounts and "mounts" in config:  # made at create, kept as they are
        config = {k: v for k, v in config.items() if k != "mounts"}
    view = canon(config, target.extra)
    group, region = target.group.name, machine.region
    if view.canonical == target.canonical:
        stale = machine.spec != target.hash
        raw_same = {k: v for k, v in machine.config.items() if k != "metadata"} == (
            target.wire_body
        ) and {
            k: v
            for k, v in machine.metadata.items()
            if not k.startswith((RECONCILER_PREFIX, FLY_METADATA_PREFIX)) and k != RESTART_KEY
        } == target.user_metadata
        reason = "in sync" if raw_same else "in sync (only fields Fly fills or rewrites differ)"
        if stale:
            reason += "; spec tag outdated"
        noop = NoOp(
            machine.id,
            slot,
            group,
            region,
            reason,
            stale_spec=stale,
            image_digest=machine.image_digest,
        )
        return _run_state(target, slot, machine, noop)
    file_changed = machine.spec != target.hash
    out_of_band = machine.spec != view.spec_hash()
    if file_changed and out_of_band:
        drift, reason = (
            DriftKind.SPEC_CHANGED_AND_OUT_OF_BAND,
            "desired config changed, and the machine was also changed outside the reconciler",
        )
    elif file_changed:
        drift, reason = DriftKind.SPEC_CHANGED, "desired config changed"
    else:
        drift, reason = DriftKind.OUT_OF_BAND, "machine was changed outside the reconciler"
    return Update(
        machine_id=machine.id,
        slot=slot,
        group=group,
        region=region,
        current_version=machine.version,
        config=target.request(slot, machine),
        diff=view.diff_to(target),
        reason=reason,
        skip_launch=(
            machine.state in SKIP_LAUNCH_STATES
            if target.group.state is None
            else target.group.state == "stopped"
        ),
        drift=drift,
        image_digest=machine.image_digest,
    )


def _plan_region(
    target: _Target,
    region: str,
    want: int,
    slots: Mapping[int, list[LiveMachine]],
    canon: _Canonicalizer,
) -> list[Action]:
    group = target.group.name
    existing = sorted(slots)
    keep, drop = existing[:want], existing[want:]
    per_index: list[tuple[int, list[Action]]] = []
    for index in keep:
        slot = format_slot(group, region, index)
        best, *extras = _best_first(slots[index])
        acts: list[Action] = [_compare(target, slot, best, canon)]
        acts.extend(
            Destroy(m.id, slot, group, region, f"duplicate of {slot} (keeping {best.id})")
            for m in sorted(extras, key=lambda m: m.id)
        )
        per_index.append((index, acts))
    for index in drop:
        slot = format_slot(group, region, index)
        reason = f"scale down: {group} wants {want} in {region}"
        per_index.append(
            (index, [Destroy(m.id, slot, group, region, reason) for m in _best_first(slots[index])])
        )
    index, missing = 0, want - len(keep)
    while missing > 0:
        if index not in slots:
            slot = format_slot(group, region, index)
            per_index.append(
                (
                    index,
                    [
                        Create(
                            slot,
                            group,
                            region,
                            target.request(slot),
                            target.create_diff,
                            skip_launch=target.group.state == "stopped",
                            mounts=target.group.mounts,
                        )
                    ],
                )
            )
            missing -= 1
        index += 1
    per_index.sort(key=lambda pair: pair[0])
    return [action for _, acts in per_index for action in acts]


def _volume_ids(machine: LiveMachine) -> tuple[str, ...]:
    mounts = machine.config.get("mounts")
    if not isinstance(mounts, list):
        return ()
    return tuple(str(m["volume"]) for m in mounts if isinstance(m, Mapping) and m.get("volume"))


def _as_drift(action: Create | Update | Destroy | Start | Stop) -> DriftReport:
    if isinstance(action, Create):
        return DriftReport(
            DriftKind.MISSING, action.slot, action.group, action.region, None, action.reason
        )
    if isinstance(action, Update):
        return DriftReport(
            action.drift,
            action.slot,
            action.group,
            action.region,
            action.machine_id,
            action.reason,
            action.diff,
        )
    kind = DriftKind.EXTRA if isinstance(action, Destroy) else DriftKind.RUN_STATE
    return DriftReport(
        kind, action.slot, action.group, action.region, action.machine_id, action.reason
    )


def _refusal(
    desired: DesiredApp, managed: int, creates: int, destroys: int, allow_empty: bool
) -> Refused | None:
    if creates > desired.max_create:
        return Refused(
            f"would create {creates} machines of {desired.app}, more than max_create "
            f"{desired.max_create}; raise max_create in the file to allow it"
        )
    if not destroys:
        return None
    if managed - destroys + creates <= 0:
        if allow_empty:
            return None
        return Refused(
            f"would destroy all {managed} managed machine(s) of {desired.app} and leave none; "
            "pass --allow-empty to allow it"
        )
    if destroys > desired.max_destroy * managed:
        return Refused(
            f"would destroy {destroys} of {managed} managed machines of {desired.app}, more than "
            f"max_destroy {desired.max_destroy:.0%}; raise max_destroy in the file to allow it"
        )
    return None


def plan(
    desired: DesiredApp,
    live: Sequence[LiveMachine],
    *,
    allow_empty: bool = False,
    prune: bool | None = None,
    previous_managed_count: int | None = None,
    relist_threshold: int = RELIST_THRESHOLD,
    app_missing: bool = False,
) -> AppPlan:
    """Plan one app: what to create, update, destroy or leave alone.

    ``prune`` overrides the file's ``prune`` when not None.  ``previous_managed_count`` is the
    number of managed machines seen on the previous pass (None: unknown, no relist guard).
    ``app_missing``: Fly does not know the app (``live`` is then empty); with ``org:`` in the
    file the plan creates it first (``create_app``), a detect_only or paused app excepted.
    """
    prune_on = desired.prune if prune is None else prune
    targets = {g.name: _Target.of(g) for g in desired.groups}
    unmanaged: list[Unmanaged] = []
    strays: list[tuple[LiveMachine, str]] = []
    by_slot: dict[tuple[str, str], dict[int, list[LiveMachine]]] = defaultdict(dict)
    managed = 0
    for machine in live:
        if machine.gone:
            continue
        if not machine.managed:
            unmanaged.append(Unmanaged(machine.id, machine.name, machine.region, machine.state))
            continue
        managed += 1
        slot = parse_slot(machine.slot)
        if slot is None or slot.group != machine.group or slot.region != machine.region:
            strays.append((machine, "managed, but its slot metadata is missing or inconsistent"))
        elif slot.group not in targets:
            strays.append((machine, f"group {slot.group} is no longer declared"))
        else:
            by_slot[(slot.group, slot.region)].setdefault(slot.index, []).append(machine)

    canon = _Canonicalizer()
    actions: list[Action] = []
    for group in desired.groups:
        target = targets[group.name]
        regions = set(group.regions) | {r for (g, r) in by_slot if g == group.name}
        for region in sorted(regions):
            slots = by_slot.get((group.name, region), {})
            actions.extend(_plan_region(target, region, group.regions.get(region, 0), slots, canon))

    orphans: list[Orphan] = []
    for machine, why in sorted(strays, key=lambda s: (s[0].slot or "", s[0].id)):
        if prune_on:
            actions.append(
                Destroy(machine.id, machine.slot, machine.group, machine.region, why + " (prune)")
            )
        else:
            orphans.append(Orphan(machine.id, machine.slot, machine.group, machine.region, why))

    if desired.prune_volumes:
        by_id = {m.id: m for m in live}
        actions = [
            replace(a, volumes=_volume_ids(by_id[a.machine_id])) if isinstance(a, Destroy) else a
            for a in actions
        ]
    if desired.only_groups is not None:
        wanted = frozenset(desired.only_groups)
        actions = [a for a in actions if a.group in wanted]
        orphans = [o for o in orphans if o.group in wanted]
    if desired.paused is not None:
        actions, orphans = [], []
    creates = sum(isinstance(a, Create) for a in actions)
    destroys = sum(isinstance(a, Destroy) for a in actions)
    drift: list[DriftReport] = []
    refused: Refused | None = None
    needs_relist = False
    if desired.detect_only:
        # a restart is a request, not drift: a detect_only app is never restarted
        drift = [_as_drift(a) for a in actions if not isinstance(a, NoOp | Restart)]
        actions = [a for a in actions if isinstance(a, NoOp)]
    else:
        refused = _refusal(desired, managed, creates, destroys, allow_empty)
        needs_relist = (
            previous_managed_count is not None
            and previous_managed_count > 0
            and managed < previous_managed_count * RELIST_SHRINK_RATIO
            and creates > relist_threshold
        )
    return AppPlan(
        app=desired.app,
        actions=tuple(actions),
        unmanaged=tuple(sorted(unmanaged, key=lambda u: u.machine_id)),
        orphans=tuple(orphans),
        drift=tuple(drift),
        refused=refused,
        needs_relist=needs_relist,
        detect_only=desired.detect_only,
        managed_count=managed,
        spec_hashes=tuple((name, t.hash) for name, t in targets.items()),
        source=desired.source,
        paused=desired.paused,
        create_app=(
            desired.org
            if app_missing and not desired.detect_only and desired.paused is None
            else None
        ),
    )
