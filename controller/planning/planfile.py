"""Saved plans: ``plan --out FILE`` writes one, ``apply --plan FILE`` applies exactly it.  Pure.

A saved plan is a versioned JSON document::

    {"format": "machine-reconciler-plan", "format_version": 1, "salt": "<hex>",
     "options": {"prune": null, "allow_empty": false},
     "apps": [{"app": ..., "source": ..., "only_groups": null,
               "desired_sha256": ..., "secrets_sha256": ...,
               "actions": [{"action": "update", "machine_id": ..., "slot": ..., "group": ...,
                            "region": ..., "version": "<the version it was planned from>"}]}],
     "review": {<the plan as ``plan --output json`` shows it>}}

Every action of the plan is recorded, no-ops included, each with the machine id and the
version it was planned from (none for a create).  ``apply --plan`` lists the machines again,
plans again from the desired-state files, and refuses the whole change unless everything is as
reviewed (:func:`check`): the same desired state, every planned machine still at its version,
and the same actions.  That is optimistic concurrency for the change as a whole, with the
machine or app that moved named in the refusal.

**No secrets in the file.** Configs are not stored (apply re-plans from the files), the review
part is the redacted ``--output json`` document, and the desired state is stored as two
hashes: ``desired_sha256`` over everything with the sensitive values (env values, file
contents: :data:`~controller.planning.normalize.SENSITIVE_PATTERNS`) replaced by
``(sensitive)``, and ``secrets_sha256``, a hash salted with the file's random ``salt`` over the
whole desired state, secrets included, re-resolved at apply time (``${ENV:..}``,
``${FILE:..}``).  A changed secret is detected without its value ever being written; the salt
defeats precomputed tables, not a guess of a weak secret: keep secrets strong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp
from controller.planning.normalize import diff
from controller.planning.plan import AppPlan, Create, Update
from controller.planning.render import to_document

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PlanFileInvalid",
    "PlannedAction",
    "SavedApp",
    "SavedPlan",
    "build",
    "check",
    "desired_hashes",
    "fingerprint",
    "parse",
]

FORMAT = "machine-reconciler-plan"
FORMAT_VERSION = 1


class PlanFileInvalid(ValueError):
    """The file is not a saved plan this version can apply (the message says why)."""


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """One action of a saved plan and the machine version it was planned from."""

    action: str
    machine_id: str | None
    slot: str | None
    group: str | None
    region: str
    version: str | None

    def describe(self) -> str:
        who = self.machine_id or "(new machine)"
        return f"{self.action} {who} {self.slot or '(no slot)'}"


@dataclass(frozen=True, slots=True)
class SavedApp:
    """One app of a saved plan."""

    app: str
    source: str | None
    only_groups: tuple[str, ...] | None
    desired_sha256: str
    secrets_sha256: str
    actions: tuple[PlannedAction, ...]


@dataclass(frozen=True, slots=True)
class SavedPlan:
    """A parsed saved plan."""

    salt: str
    prune: bool | None
    allow_empty: bool
    apps: tuple[SavedApp, ...]


# ------------------------------------------------------------------------------ hashing


def _sha256(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _public(app: DesiredApp) -> dict[str, Any]:
    """The desired state with every sensitive value redacted (what ``plan`` may show)."""
    return {
        "app": app.app,
        "prune": app.prune,
        "detect_only": app.detect_only,
        "max_destroy": app.max_destroy,
        "groups": [
            {
                "name": g.name,
                "regions": g.regions,
                "update": g.update.model_dump(mode="json"),
                "config": [[c.path, c.after] for c in diff({}, g.config.to_wire())],
            }
            for g in app.groups
        ],
    }


def desired_hashes(app: DesiredApp, salt: str) -> tuple[str, str]:
    """``(desired_sha256, secrets_sha256)`` of ``app`` (see the module docstring)."""
    public = json.dumps(_public(app), sort_keys=True, default=str)
    whole = json.dumps(
        {"public": _public(app), "configs": [g.config.to_wire() for g in app.groups]},
        sort_keys=True,
        default=str,
    )
    return _sha256(public), _sha256(salt, whole)


# ------------------------------------------------------------------------------ building


def fingerprint(app_plan: AppPlan, live: Sequence[LiveMachine]) -> tuple[PlannedAction, ...]:
    """Every action of ``app_plan`` with the version of its machine in ``live``."""
    versions = {m.id: m.version for m in live}
    out: list[PlannedAction] = []
    for a in app_plan.actions:
        if isinstance(a, Create):
            out.append(PlannedAction("create", None, a.slot, a.group, a.region, None))
        elif isinstance(a, Update):
            out.append(
                PlannedAction("update", a.machine_id, a.slot, a.group, a.region, a.current_version)
            )
        else:  # destroy, noop, start, stop, restart: the machine's listed version
            version = versions.get(a.machine_id)
            out.append(PlannedAction(a.kind, a.machine_id, a.slot, a.group, a.region, version))
    return tuple(out)


def build(
    observed: Sequence[tuple[DesiredApp, AppPlan, Sequence[LiveMachine]]],
    *,
    salt: str,
    prune: bool | None,
    allow_empty: bool = False,
) -> dict[str, Any]:
    """The saved-plan document for the apps planned (``(desired, plan, live)`` each)."""
    apps = []
    for desired, app_plan, live in observed:
        public, secrets = desired_hashes(desired, salt)
        apps.append(
            {
                "app": desired.app,
                "source": desired.source,
                "only_groups": list(desired.only_groups) if desired.only_groups else None,
                "desired_sha256": public,
                "secrets_sha256": secrets,
                "actions": [
                    {
                        "action": p.action,
                        "machine_id": p.machine_id,
                        "slot": p.slot,
                        "group": p.group,
                        "region": p.region,
                        "version": p.version,
                    }
                    for p in fingerprint(app_plan, live)
                ],
            }
        )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "salt": salt,
        "options": {"prune": prune, "allow_empty": allow_empty},
        "apps": apps,
        "review": to_document([p for _, p, _ in observed]),
    }


# ------------------------------------------------------------------------------ parsing


def _text(value: Any, what: str, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise PlanFileInvalid(f"{what} must be a string")
    return value


def parse(document: Any) -> SavedPlan:
    """Validate a loaded JSON document; raises :class:`PlanFileInvalid`."""
    if not isinstance(document, Mapping) or document.get("format") != FORMAT:
        raise PlanFileInvalid(f'not a saved plan (no "format": "{FORMAT}")')
    if document.get("format_version") != FORMAT_VERSION:
        raise PlanFileInvalid(
            f"saved plan format_version {document.get('format_version')!r} is not "
            f"{FORMAT_VERSION}: plan again with this version"
        )
    options = document.get("options")
    apps = document.get("apps")
    if not isinstance(options, Mapping) or not isinstance(apps, list):
        raise PlanFileInvalid('a saved plan needs "options" and "apps"')
    prune = options.get("prune")
    if prune is not None and not isinstance(prune, bool):
        raise PlanFileInvalid("options.prune must be true, false or null")
    saved: list[SavedApp] = []
    for i, entry in enumerate(apps):
        where = f"apps[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("actions"), list):
            raise PlanFileInvalid(f'{where} must be an object with "actions"')
        groups = entry.get("only_groups")
        if groups is not None and not (
            isinstance(groups, list) and all(isinstance(g, str) for g in groups)
        ):
            raise PlanFileInvalid(f"{where}.only_groups must be a list of names or null")
        actions = []
        for j, action in enumerate(entry["actions"]):
            at = f"{where}.actions[{j}]"
            if not isinstance(action, Mapping):
                raise PlanFileInvalid(f"{at} must be an object")
            actions.append(
                PlannedAction(
                    action=_text(action.get("action"), f"{at}.action"),
                    machine_id=_text(action.get("machine_id"), f"{at}.machine_id", optional=True),
                    slot=_text(action.get("slot"), f"{at}.slot", optional=True),
                    group=_text(action.get("group"), f"{at}.group", optional=True),
                    region=_text(action.get("region"), f"{at}.region"),
                    version=_text(action.get("version"), f"{at}.version", optional=True),
                )
            )
        saved.append(
            SavedApp(
                app=_text(entry.get("app"), f"{where}.app"),
                source=_text(entry.get("source"), f"{where}.source", optional=True),
                only_groups=tuple(groups) if groups else None,
                desired_sha256=_text(entry.get("desired_sha256"), f"{where}.desired_sha256"),
                secrets_sha256=_text(entry.get("secrets_sha256"), f"{where}.secrets_sha256"),
                actions=tuple(actions),
            )
        )
    return SavedPlan(
        salt=_text(document.get("salt"), "salt"),
        prune=prune,
        allow_empty=bool(options.get("allow_empty", False)),
        apps=tuple(saved),
    )


# ------------------------------------------------------------------------------ checking


def check(
    saved: SavedApp,
    salt: str,
    desired: DesiredApp,
    app_plan: AppPlan,
    live: Sequence[LiveMachine],
) -> list[str]:
    """Why the plan made now from ``desired`` and ``live`` is not the one saved (empty: it is).

    Each reason names the app, or the machine whose version moved.
    """
    app = saved.app
    public, secrets = desired_hashes(desired, salt)
    if public != saved.desired_sha256:
        return [f"the desired state of app {app} changed since the plan ({desired.source or app})"]
    if secrets != saved.secrets_sha256:
        return [
            f"a sensitive value of app {app} changed since the plan (an env value or file "
            "content, e.g. one resolved from ${ENV:..} or ${FILE:..}; its value is not shown)"
        ]
    problems: list[str] = []
    now = {m.id: m for m in live if not m.gone}
    for planned in saved.actions:
        if planned.machine_id is None:
            continue
        machine = now.get(planned.machine_id)
        where = f"machine {planned.machine_id} ({planned.slot or 'no slot'}) of app {app}"
        if machine is None:
            problems.append(f"{where} is gone since the plan")
        elif machine.version != planned.version:
            problems.append(
                f"{where} changed since the plan: planned from version {planned.version}, "
                f"now {machine.version}"
            )
    if problems:
        return problems
    fresh = fingerprint(app_plan, live)
    if fresh != saved.actions:
        added = [p.describe() for p in fresh if p not in saved.actions]
        dropped = [p.describe() for p in saved.actions if p not in fresh]
        detail = "; ".join(
            part
            for part in (
                f"now also: {', '.join(added)}" if added else "",
                f"no longer: {', '.join(dropped)}" if dropped else "",
            )
            if part
        )
        return [f"the plan of app {app} is not the one saved ({detail or 'order changed'})"]
    if app_plan.refused is not None:
        return [f"the plan of app {app} is refused: {app_plan.refused.reason}"]
    return []
