"""Plans as text (terraform-like) and as a stable JSON document.  Pure: strings in, strings out.

Text::

    acme-web (desired_state/acme-web.yaml)
      + create web-ams-1 (group web, region ams): slot has no machine
          + image: "registry.fly.io/acme-web:v42"
          + env.LOG_LEVEL: "info"
          + env.DB_URL: (sensitive)
      ~ update 3d8d413b29d089 web-ams-0 (group web, region ams): desired config changed
          ~ guest.memory_mb: 256 -> 512
      - destroy 148e123c29d0e8 web-iad-1 (group web, region iad): scale down: web wants 1 in iad

    Plan: 1 to create, 1 to update, 1 to destroy.

Sensitive values (``env`` values that are secret by the rule of
:mod:`controller.core.redaction`, inline file contents) print as ``(sensitive)``: the line says
the field changed, never the value nor anything derived from it.  Literal env values written in
the file are shown.  The plan itself never
holds those values in its diffs (:data:`controller.planning.normalize.REDACTED`), and the request
configs inside actions are never printed.

**Big plans stay readable.**  Machines that differ only in slot and id (the same action,
group, region, reason and diff) form a run; a run longer than :data:`RUN_IN_FULL` prints its
first :data:`RUN_HEAD` machines and one line for the rest
(``+ create 9,997 more machines in web/ams like the above``), and the app's block then says
once that the JSON lists every machine (:func:`summarise_runs`).  A plan whose runs are all
short prints one line per machine, as it always did.

JSON (:func:`to_json`): ``{"format_version": 2, "summary": {...}, "apps": [...],
"machines": [...], "volumes": [...], "errors": [...]}`` with one record per machine (actions,
no-ops, drift reports, unmanaged and orphaned machines) and one per volume a create attaches
or a destroy prunes, every record of a list with the same keys, keys sorted, order
deterministic, never summarised.  The shape is a JSON Schema shipped with the package
(``controller/planning/plan-output.schema.json``, :data:`SCHEMA_PATH`).  Adding a key is not a
new ``format_version`` (``volumes`` was added within 2); removing one or changing what one
means is.

A failure is never printed as "No changes": every app that could not be planned (its machines
could not be listed, or its file is invalid) is a :class:`PlanError`, named in the text summary
and in the JSON ``errors`` list, and its entry in ``apps`` has ``status: failed`` (or
``invalid``).  Each app's ``status`` is one of :data:`APP_STATUSES`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.planning.normalize import REDACTED, FieldChange
from controller.planning.plan import (
    AppPlan,
    Create,
    Destroy,
    DriftReport,
    NoOp,
    Orphan,
    Restart,
    Start,
    Stop,
    Unmanaged,
    Update,
)
from controller.planning.staging import staged

__all__ = [
    "APP_STATUSES",
    "FORMAT_VERSION",
    "RUN_HEAD",
    "RUN_IN_FULL",
    "SCHEMA_PATH",
    "SUMMARISED_NOTE",
    "Entry",
    "PlanError",
    "app_status",
    "change_records",
    "machine_record",
    "render",
    "summarise_runs",
    "summary_line",
    "to_document",
    "to_json",
]

FORMAT_VERSION = 2
"""2: ``errors`` and ``apps[].status`` (1 had neither: a failed app was missing)."""
SCHEMA_PATH = Path(__file__).with_name("plan-output.schema.json")
"""The JSON Schema of :func:`to_document` (package data)."""
_INDENT = "  "
_TRANSITION_SYMBOLS = {"start": "▶", "stop": "■", "restart": "↻"}

APP_STATUSES = ("changes", "in_sync", "drift", "refused", "paused", "failed", "invalid")
"""``changes``: the plan changes machines; ``in_sync``: nothing to do; ``drift``: a
``detect_only`` app is out of sync (not corrected); ``refused``: a safety budget refused the
plan; ``paused``: the app is paused and nothing is planned; ``failed``: the app could not be
planned (API error); ``invalid``: its desired-state file is invalid."""


@dataclass(frozen=True, slots=True)
class PlanError:
    """An app that could not be planned: why, and the Fly request id when there is one."""

    app: str
    error_class: str
    message: str
    request_id: str | None = None

    @property
    def status(self) -> str:
        return "invalid" if self.error_class == "invalid_desired_state" else "failed"


def app_status(plan: AppPlan) -> str:
    """The ``status`` of a planned app (see :data:`APP_STATUSES`)."""
    if plan.refused:
        return "refused"
    if plan.paused:
        return "paused"
    if plan.has_changes:
        return "changes"
    if plan.drift:
        return "drift"
    return "in_sync"


def _plans(plans: AppPlan | Sequence[AppPlan]) -> Sequence[AppPlan]:
    return (plans,) if isinstance(plans, AppPlan) else plans


def _value(value: Any, sensitive: bool) -> str:
    if sensitive:
        return REDACTED
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _change_line(change: FieldChange) -> str:
    pad = _INDENT * 3
    if change.before is None:
        return f"{pad}+ {change.path}: {_value(change.after, change.sensitive)}"
    if change.after is None:
        return f"{pad}- {change.path}: {_value(change.before, change.sensitive)}"
    before = _value(change.before, change.sensitive)
    after = _value(change.after, change.sensitive)
    if change.sensitive:
        return f"{pad}~ {change.path}: {REDACTED} (changed)"
    return f"{pad}~ {change.path}: {before} -> {after}"


def _where(slot: str | None, group: str | None, region: str) -> str:
    label = slot or "(no slot)"
    return f"{label} (group {group or '?'}, region {region})"


RUN_IN_FULL = 10
"""A run of up to this many similar entries prints in full: a small plan prints one line (and
its diff) per machine."""
RUN_HEAD = 3
"""A longer run prints its first ``RUN_HEAD`` entries, then one line counting the others."""
SUMMARISED_NOTE = "(long runs of similar machines are counted: plan --output json lists each one)"
"""Said once under an app whose listing cut a run, so a reviewer knows where the ids are."""


@dataclass(frozen=True, slots=True)
class Entry:
    """The lines of one machine in a text listing.  Consecutive entries with equal ``key``
    form a run (the same thing done to machines that differ only in slot and id); ``more(n)``
    is the line that stands for ``n`` of them, used when the run is long."""

    key: Hashable
    lines: list[str]
    more: Callable[[int], str]


def summarise_runs(entries: Iterable[Entry]) -> list[str]:
    """The lines of ``entries``, a long run of similar ones cut to its head and a count.

    Why: ``regions: {ams: 10000}`` must give a plan a reviewer can read (and a CI log can
    hold), not 10,000 near-identical lines.  Runs of at most :data:`RUN_IN_FULL` print as
    they always did; a longer run prints :data:`RUN_HEAD` entries then ``more(rest)``.  The
    JSON document is never summarised: it keeps one record per machine.
    """
    return _summarise(entries)[0]


def _summarise(entries: Iterable[Entry]) -> tuple[list[str], bool]:
    """:func:`summarise_runs`, and whether any run was cut."""
    out: list[str] = []
    run: list[Entry] = []
    cut = False

    def flush() -> None:
        nonlocal cut
        if len(run) <= RUN_IN_FULL:
            for entry in run:
                out.extend(entry.lines)
        else:
            cut = True
            for entry in run[:RUN_HEAD]:
                out.extend(entry.lines)
            out.append(run[0].more(len(run) - RUN_HEAD))
        run.clear()

    for entry in entries:
        if run and entry.key != run[0].key:
            flush()
        run.append(entry)
    flush()
    return out, cut


def _diff_key(diff: Sequence[FieldChange]) -> str:
    return json.dumps(diff, sort_keys=True, default=str)


def _more(
    symbol: str, kind: str, group: str | None, region: str, suffix: str = ""
) -> Callable[[int], str]:
    """The line that stands for ``n`` more actions of one run (see :func:`summarise_runs`)."""
    where = f"{group or '?'}/{region}"
    return lambda n: (
        f"{_INDENT}{symbol} {kind} {n:,} more machines in {where} like the above{suffix}"
    )


def _action_entries(plan: AppPlan) -> list[Entry]:
    """One entry per changing action and per drift report, keyed so that machines differing
    only in slot and machine id (same group, region, reason and diff) form one run."""
    entries: list[Entry] = []
    # Groups are uniform: a diff already printed for the group is referenced, not repeated.
    shown: dict[tuple[str, str, str], str] = {}

    def changes(
        kind: str, group: str, slot: str, diff: tuple[FieldChange, ...], head: list[str]
    ) -> list[str]:
        """The diff lines, or a note on the header when the group already showed that diff."""
        key = (kind, group, _diff_key(diff))
        if diff and key in shown:
            head[-1] += f" (same changes as {shown[key]})"
            return []
        shown[key] = slot
        return [_change_line(c) for c in diff]

    for action in plan.actions:
        if isinstance(action, NoOp):
            continue
        where = _where(action.slot, action.group, action.region)
        if isinstance(action, Create):
            launch = " [stays stopped]" if action.skip_launch else ""
            lines = [f"{_INDENT}+ create {where}{launch}: {action.reason}"]
            lines += changes("create", action.group, action.slot, action.diff, lines)
            lines.extend(
                f"{_INDENT * 3}+ volume {m.volume.name} ({m.volume.size_gb} GB, {action.region}) "
                f"at {m.path}: an unattached one of that name, else a new one"
                for m in action.mounts
            )
            mounts = tuple((m.path, m.volume.name, m.volume.size_gb) for m in action.mounts)
            key: Hashable = (
                "create",
                action.group,
                action.region,
                action.reason,
                action.skip_launch,
                _diff_key(action.diff),
                mounts,
            )
            entries.append(Entry(key, lines, _more("+", "create", action.group, action.region)))
        elif isinstance(action, Update):
            launch = " [stays stopped]" if action.skip_launch else ""
            lines = [f"{_INDENT}~ update {action.machine_id} {where}{launch}: {action.reason}"]
            if action.image_digest is not None:
                lines.append(f"{_INDENT * 3}  (runs {action.image_digest} now)")
            lines += changes("update", action.group, action.slot, action.diff, lines)
            key = (
                "update",
                action.group,
                action.region,
                action.reason,
                action.skip_launch,
                action.drift,
                action.image_digest,
                _diff_key(action.diff),
            )
            entries.append(Entry(key, lines, _more("~", "update", action.group, action.region)))
        elif isinstance(action, Destroy):
            lines = [f"{_INDENT}- destroy {action.machine_id} {where}: {action.reason}"]
            lines.extend(f"{_INDENT * 3}- volume {v} (prune_volumes)" for v in action.volumes)
            key = ("destroy", action.group, action.region, action.reason, len(action.volumes))
            volumes = " (and their volumes: prune_volumes)" if action.volumes else ""
            more = _more("-", "destroy", action.group, action.region, volumes)
            entries.append(Entry(key, lines, more))
        else:
            symbol = _TRANSITION_SYMBOLS[action.kind]
            lines = [
                f"{_INDENT}{symbol} {action.kind} {action.machine_id} {where}: {action.reason}"
            ]
            key = (action.kind, action.group, action.region, action.reason)
            entries.append(
                Entry(key, lines, _more(symbol, action.kind, action.group, action.region))
            )
    for report in plan.drift:
        who = report.machine_id or "(no machine)"
        where = _where(report.slot, report.group, report.region)
        lines = [
            f"{_INDENT}! drift {report.kind.value} {who} {where}: {report.reason} "
            "(detect_only: not corrected)"
        ]
        lines.extend(_change_line(c) for c in report.diff)
        key = ("drift", report.kind, report.group, report.region, report.reason)
        key = (*key, _diff_key(report.diff))
        drifted = f"drift {report.kind.value}"
        more = _more("!", drifted, report.group, report.region, " (detect_only: not corrected)")
        entries.append(Entry(key, lines, more))
    return entries


def _orphan_entry(o: Orphan) -> Entry:
    where = f"{o.group or '?'}/{o.region}"
    return Entry(
        ("orphan", o.group, o.region, o.reason),
        [f"{_INDENT * 2}{o.machine_id} {_where(o.slot, o.group, o.region)}: {o.reason}"],
        lambda n: f"{_INDENT * 2}{n:,} more in {where} like the above",
    )


def _unmanaged_entry(u: Unmanaged) -> Entry:
    return Entry(
        ("unmanaged", u.region, u.state),
        [f"{_INDENT * 2}{u.machine_id} {json.dumps(u.name)} region {u.region}, {u.state}"],
        lambda n: f"{_INDENT * 2}{n:,} more in region {u.region}, {u.state}, like the above",
    )


def _render_app(plan: AppPlan) -> list[str]:
    head = f"{plan.app} ({plan.source})" if plan.source else plan.app
    lines = [head]
    if plan.create_app is not None:
        lines.append(f"{_INDENT}+ create app {plan.app} (org {plan.create_app}): app not found")
    actions, cut = _summarise(_action_entries(plan))
    lines.extend(actions)
    noops = sum(isinstance(a, NoOp) for a in plan.actions)
    if noops:
        lines.append(f"{_INDENT}{noops} machine(s) in sync")
    if plan.orphans:
        lines.append(f"{_INDENT}orphaned managed machines (kept; set prune: true to destroy):")
        orphans, cut_orphans = _summarise(_orphan_entry(o) for o in plan.orphans)
        lines.extend(orphans)
        cut |= cut_orphans
    if plan.unmanaged:
        lines.append(f"{_INDENT}unmanaged machines (not ours, never touched):")
        unmanaged, cut_unmanaged = _summarise(_unmanaged_entry(u) for u in plan.unmanaged)
        lines.extend(unmanaged)
        cut |= cut_unmanaged
    if cut:
        lines.append(f"{_INDENT}{SUMMARISED_NOTE}")
    if staged(plan) and len(plan.creates) > 1:
        lines.append(
            f"{_INDENT}note: the machine list shows no managed machine: one machine is created "
            "first, the others once a new listing shows it"
        )
    if plan.needs_relist:
        lines.append(
            f"{_INDENT}note: the live list is much shorter than last pass; the machines will be "
            "re-listed before anything is created"
        )
    if plan.paused:
        lines.append(
            f"{_INDENT}PAUSED ({plan.paused}): nothing is planned or changed for this app."
        )
    if plan.refused:
        lines.append(f"{_INDENT}REFUSED: {plan.refused.reason}. Nothing will change for this app.")
    if len(lines) == 1:
        lines.append(f"{_INDENT}no machines")
    return lines


def summary_line(plans: AppPlan | Sequence[AppPlan], errors: Sequence[PlanError] = ()) -> str:
    """``Plan: N to create, M to update, K to destroy.`` or ``No changes.``; with errors it
    starts ``Failed: app (class), ...`` and never claims "No changes" for them."""
    items = _plans(plans)
    base = _counts_line(items)
    if not errors:
        return base
    failed = ", ".join(f"{e.app} ({e.error_class})" for e in errors)
    if not items:
        return f"Failed: {failed}. Nothing was planned."
    return f"Failed: {failed}. The other {len(items)} app(s): {base}"


def _counts_line(items: Sequence[AppPlan]) -> str:
    creates = sum(len(p.creates) for p in items)
    updates = sum(len(p.updates) for p in items)
    destroys = sum(len(p.destroys) for p in items)
    drift = sum(len(p.drift) for p in items)
    new_apps = sum(p.create_app is not None for p in items)
    moves = {
        kind: sum(a.kind == kind for p in items for a in p.transitions)
        for kind in ("start", "stop", "restart")
    }
    if creates or updates or destroys or new_apps or any(moves.values()):
        line = f"Plan: {creates} to create, {updates} to update, {destroys} to destroy."
    else:
        line = "No changes."
    extra = ", ".join(f"{n} to {kind}" for kind, n in moves.items() if n)
    if extra:
        line += f" Also: {extra}."
    if new_apps:
        line += f" Apps to create: {new_apps}."
    if drift:
        line += f" Drift: {drift} (detect_only, not corrected)."
    refused = [p.app for p in items if p.refused]
    if refused:
        line += f" Refused: {', '.join(refused)}."
    return line


def render(plans: AppPlan | Sequence[AppPlan], errors: Sequence[PlanError] = ()) -> str:
    """Terraform-like text for one or several app plans (and the apps that could not be
    planned), ending with the summary line."""
    blocks = ["\n".join(_render_app(p)) for p in _plans(plans)]
    for error in errors:
        request = f" (fly-request-id {error.request_id})" if error.request_id else ""
        blocks.append(
            f"{error.app}\n{_INDENT}ERROR {error.error_class}: {error.message}{request}. "
            "Not planned."
        )
    return "\n\n".join([*blocks, summary_line(plans, errors)]) + "\n"


# ------------------------------------------------------------------------------ JSON


def change_records(diff: Sequence[FieldChange]) -> list[dict[str, Any]]:
    """A diff as the ``changes`` of a record, sensitive values as ``(sensitive)``."""
    return [
        {
            "path": c.path,
            "before": REDACTED if c.sensitive and c.before is not None else c.before,
            "after": REDACTED if c.sensitive and c.after is not None else c.after,
            "sensitive": c.sensitive,
        }
        for c in diff
    ]


def machine_record(**fields: Any) -> dict[str, Any]:
    """One ``machines`` record: every key present (null when it does not apply), ``fields``
    set.  Public so that ``adopt`` and ``restart`` list their machines with the same keys."""
    record: dict[str, Any] = {
        "app": None,
        "action": None,
        "machine_id": None,
        "slot": None,
        "group": None,
        "region": None,
        "reason": None,
        "drift": None,
        "skip_launch": None,
        "current_version": None,
        "image_digest": None,
        "changes": [],
    }
    record.update(fields)
    return record


def _machine_records(plan: AppPlan) -> list[dict[str, Any]]:
    out = []
    common: dict[str, Any] = {"app": plan.app}
    for a in plan.actions:
        base: dict[str, Any] = {
            "slot": a.slot,
            "group": a.group,
            "region": a.region,
            "reason": a.reason,
        }
        if isinstance(a, Create):
            out.append(
                machine_record(
                    action="create",
                    skip_launch=a.skip_launch,
                    changes=change_records(a.diff),
                    **common,
                    **base,
                )
            )
        elif isinstance(a, Update):
            out.append(
                machine_record(
                    action="update",
                    machine_id=a.machine_id,
                    drift=a.drift.value,
                    skip_launch=a.skip_launch,
                    current_version=a.current_version,
                    changes=change_records(a.diff),
                    image_digest=a.image_digest,
                    **common,
                    **base,
                )
            )
        elif isinstance(a, Destroy):
            out.append(machine_record(action="destroy", machine_id=a.machine_id, **common, **base))
        elif isinstance(a, Start | Stop | Restart):
            out.append(
                machine_record(
                    action=a.kind,
                    machine_id=a.machine_id,
                    current_version=a.current_version,
                    **common,
                    **base,
                )
            )
        else:
            out.append(
                machine_record(
                    action="noop",
                    machine_id=a.machine_id,
                    image_digest=a.image_digest,
                    **common,
                    **base,
                )
            )
    out.extend(_drift_record(plan.app, d) for d in plan.drift)
    out.extend(
        machine_record(
            action="orphan",
            machine_id=o.machine_id,
            slot=o.slot,
            group=o.group,
            region=o.region,
            reason=o.reason,
            **common,
        )
        for o in plan.orphans
    )
    out.extend(
        machine_record(
            action="unmanaged",
            machine_id=u.machine_id,
            region=u.region,
            reason=f"not managed by the reconciler ({u.state})",
            **common,
        )
        for u in plan.unmanaged
    )
    return out


VOLUME_ATTACH = "attach_or_create"
"""A create's volume: an unattached volume of that name in the slot's region, else a new one."""
VOLUME_DESTROY = "destroy"
"""A destroyed machine's volume (``prune_volumes: true``), destroyed after the machine."""


def _volume_records(plan: AppPlan) -> list[dict[str, Any]]:
    """The ``+ volume`` and ``- volume`` lines of the text plan, as records with one key set.

    A create's volume has no id yet (which volume it gets is decided when it runs); a pruned
    volume is known only by its id.  ``slot``/``machine_id`` tie each one to its machine record.
    """
    out: list[dict[str, Any]] = []
    for a in plan.actions:
        if isinstance(a, Create):
            out.extend(
                _volume_record(
                    app=plan.app,
                    action=VOLUME_ATTACH,
                    slot=a.slot,
                    group=a.group,
                    region=a.region,
                    name=m.volume.name,
                    size_gb=m.volume.size_gb,
                    path=m.path,
                    reason="an unattached volume of that name in the region, else a new one",
                )
                for m in a.mounts
            )
        elif isinstance(a, Destroy):
            out.extend(
                _volume_record(
                    app=plan.app,
                    action=VOLUME_DESTROY,
                    machine_id=a.machine_id,
                    slot=a.slot,
                    group=a.group,
                    region=a.region,
                    volume_id=volume,
                    reason="prune_volumes: destroyed after its machine",
                )
                for volume in a.volumes
            )
    return out


def _volume_record(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "app": None,
        "action": None,
        "machine_id": None,
        "slot": None,
        "group": None,
        "region": None,
        "volume_id": None,
        "name": None,
        "size_gb": None,
        "path": None,
        "reason": None,
    }
    record.update(fields)
    return record


def _drift_record(app: str, report: DriftReport) -> dict[str, Any]:
    return machine_record(
        app=app,
        action="drift",
        machine_id=report.machine_id,
        slot=report.slot,
        group=report.group,
        region=report.region,
        reason=report.reason,
        drift=report.kind.value,
        changes=change_records(report.diff),
    )


def to_document(
    plans: AppPlan | Sequence[AppPlan], errors: Sequence[PlanError] = ()
) -> dict[str, Any]:
    """The machine-readable plan as plain data (see the module docstring for the shape)."""
    items = _plans(plans)
    return {
        "format_version": FORMAT_VERSION,
        "summary": {
            "create": sum(len(p.creates) for p in items),
            "update": sum(len(p.updates) for p in items),
            "destroy": sum(len(p.destroys) for p in items),
            **{
                kind: sum(a.kind == kind for p in items for a in p.transitions)
                for kind in ("start", "stop", "restart")
            },
            "noop": sum(len(p.actions) - len(p.changes) for p in items),
            "drift": sum(len(p.drift) for p in items),
            "refused_apps": [p.app for p in items if p.refused],
            "failed_apps": [e.app for e in errors],
            "text": summary_line(items, errors),
        },
        "apps": [
            {
                "app": p.app,
                "status": app_status(p),
                "source": p.source,
                "refused": p.refused.reason if p.refused else None,
                "needs_relist": p.needs_relist,
                "detect_only": p.detect_only,
                "managed_count": p.managed_count,
                "spec_hashes": dict(p.spec_hashes),
                "paused": p.paused,
                "create_app": p.create_app,
            }
            for p in items
        ]
        + [
            {
                "app": e.app,
                "status": e.status,
                "source": None,
                "refused": None,
                "needs_relist": False,
                "detect_only": False,
                "managed_count": None,
                "spec_hashes": {},
            }
            for e in errors
        ],
        "machines": [record for p in items for record in _machine_records(p)],
        "volumes": [record for p in items for record in _volume_records(p)],
        "errors": [
            {
                "app": e.app,
                "class": e.error_class,
                "message": e.message,
                "request_id": e.request_id,
            }
            for e in errors
        ],
    }


def to_json(plans: AppPlan | Sequence[AppPlan], errors: Sequence[PlanError] = ()) -> str:
    """:func:`to_document` as indented JSON text with sorted keys (stable across runs)."""
    document = to_document(plans, errors)
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
