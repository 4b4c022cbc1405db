"""The ``restart`` command's plan: a rolling restart of an app's (or some groups') machines.

Pure, like :func:`controller.planning.plan.plan`: from the desired app and its live machines,
one :class:`~controller.planning.plan.Restart` per running managed machine of the selected
groups (in slot order), and nothing else.  The executor rolls them like updates: in each
group's ``max_unavailable`` window, under each machine's lease, health-gated, halting the
group on the first machine that does not come back healthy.  Machines that are not running
(stopped, suspended, created) are not restarted: they are counted in ``skipped``.  Unmanaged
machines and managed machines of undeclared groups are never restarted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp
from controller.planning.plan import AppPlan, Restart

__all__ = ["RESTART_REASON", "RestartPlan", "restart_plan"]

RESTART_REASON = "rolling restart (restart command)"


@dataclass(frozen=True, slots=True)
class RestartPlan:
    """The restarts as an :class:`AppPlan` (what the executor runs) and what was left out."""

    plan: AppPlan
    skipped: tuple[LiveMachine, ...] = ()
    """Managed machines of the selected groups that are not running (not restarted)."""


def restart_plan(
    desired: DesiredApp, live: Sequence[LiveMachine], groups: Sequence[str] = ()
) -> RestartPlan:
    """Restart every running managed machine of ``groups`` (all declared groups when empty)."""
    wanted = set(groups) or {g.name for g in desired.groups}
    order = {g.name: i for i, g in enumerate(desired.groups)}
    chosen = sorted(
        (
            m
            for m in live
            if m.managed and not m.gone and m.group in wanted and m.group in order and m.slot
        ),
        key=lambda m: (order[m.group or ""], m.slot or "", m.id),
    )
    running = [m for m in chosen if m.state == "started"]
    actions = tuple(
        Restart(
            machine_id=m.id,
            slot=m.slot or "",
            group=m.group or "",
            region=m.region,
            current_version=m.version,
            reason=RESTART_REASON,
        )
        for m in running
    )
    plan = AppPlan(app=desired.app, actions=actions, source=desired.source)
    return RestartPlan(plan, tuple(m for m in chosen if m.state != "started"))
