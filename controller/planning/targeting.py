"""Targeting and pausing: restrict what the planner may touch, as values on :class:`DesiredApp`.

``--group`` (``plan``, ``apply``) narrows an app to some of its groups; the planner then keeps
only those groups' actions and never touches another group's machines (DESIGN.md 3: identity is
the slot, so the other groups' machines are simply not part of the plan).  A pause (the file's
``paused: true``, a ``paused/<app>`` marker, the daemon's ``--pause-app``) empties the plan.
Both travel on the desired app, so every path that plans (``plan``, ``apply``, a saved plan, the
daemon, the executor's re-plans) sees the same restriction.  Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from controller.model.desired import DesiredApp

__all__ = ["narrow_groups", "pause", "unknown_groups"]


def unknown_groups(apps: Iterable[DesiredApp], groups: Sequence[str]) -> list[str]:
    """The names in ``groups`` that none of ``apps`` declares (a typo must not plan nothing)."""
    declared = {g.name for app in apps for g in app.groups}
    return [name for name in groups if name not in declared]


def narrow_groups(app: DesiredApp, groups: Sequence[str] | None) -> DesiredApp:
    """``app`` restricted to ``groups`` (None or empty: unchanged).  An app that declares none
    of them gets an empty target: nothing of it is planned."""
    if not groups:
        return app
    return app.model_copy(update={"only_groups": tuple(dict.fromkeys(groups))})


def pause(app: DesiredApp, reason: str | None) -> DesiredApp:
    """``app`` paused for ``reason`` (None: unchanged; an earlier reason is kept)."""
    if reason is None or app.paused is not None:
        return app
    return app.model_copy(update={"paused": reason})
