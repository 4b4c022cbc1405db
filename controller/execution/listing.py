"""Listing an app's machines as the planner sees them (DESIGN.md 3).

Every machine is listed (a metadata filter would hide the unmanaged ones the plan must report
and never touch).  ``confirm_managed`` adds a second listing filtered on
``reconciler/managed=true`` and keeps the union: the suspicious-list guard of the reconciler and
the confirming listing of a staged create use it, so a managed machine that one (eventually
consistent, or wrong) answer leaves out is still seen.
"""

from __future__ import annotations

from controller.core.errors import NotFound
from controller.execution.operations import to_live_machine
from controller.flyapi import MachinesClient
from controller.model.actual import MANAGED_KEY, MANAGED_VALUE, LiveMachine
from controller.model.desired import DesiredApp

__all__ = ["list_desired", "list_live"]


async def list_live(
    client: MachinesClient, app: str, *, confirm_managed: bool = False
) -> tuple[LiveMachine, ...]:
    """Every machine of ``app`` as :class:`LiveMachine` values, sorted by id.

    ``confirm_managed`` adds a second listing filtered on ``reconciler/managed=true`` and keeps
    the union, so a managed machine missing from one (eventually consistent) answer is seen.
    """
    found = {m.id: m for m in await client.list_machines(app)}
    if confirm_managed:
        for machine in await client.list_machines(app, metadata={MANAGED_KEY: MANAGED_VALUE}):
            found.setdefault(machine.id, machine)
    return tuple(to_live_machine(found[k]) for k in sorted(found))


async def list_desired(
    client: MachinesClient, desired: DesiredApp, *, confirm_managed: bool = False
) -> tuple[tuple[LiveMachine, ...], bool]:
    """:func:`list_live` for ``desired.app`` and whether the app is missing.

    Listing an app Fly does not know answers 404.  With ``org:`` in the file that is a plan
    to create the app (``(), True``); without it, the :class:`NotFound` is raised again with a
    message saying how to fix it.
    """
    try:
        return await list_live(client, desired.app, confirm_managed=confirm_managed), False
    except NotFound as exc:
        if desired.org is not None:
            return (), True
        raise NotFound(
            method=exc.method,
            path=exc.path,
            status=exc.status,
            request_id=exc.request_id,
            detail=f"app {desired.app} not found; create it with `fly apps create` "
            "or set org: in the file",
        ) from exc
