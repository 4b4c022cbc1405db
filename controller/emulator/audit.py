"""What the emulator knew about a machine when a request for it arrived: the ``audit`` field of
the request log.

A client's safety rules (a lease on every machine it writes, its nonce on every write,
``current_version`` set to the version it read, never a write on someone else's machine) are
claims about the *server's* state at the moment of each write, which a client cannot see and a
log of header names cannot prove.  So for every request on one machine
(``/v1/apps/{app}/machines/{id}[/...]``) the pipeline records, just before the request is
handled (after injected latency, so a delayed write is judged at the moment it lands):

``machine_version``
    the machine's version then;
``managed``
    whether its ``config.metadata`` says ``reconciler/managed: "true"``;
``lease``
    ``none`` (no live lease), ``match`` (the request's ``fly-machine-lease-nonce`` equals the live
    lease's nonce), ``mismatch`` (another nonce) or ``missing`` (a live lease, no nonce sent);
``lease_owner``
    the live lease's holder (an identity such as ``<id>@tokens.fly.io``, not a secret), or null;
``version``
    on a machine update only: ``match`` / ``stale`` (an older version of this machine) /
    ``unknown`` (never a version of it) / ``absent`` (no ``current_version`` sent); else null.

Nonces themselves are never recorded.  One approximation: an outside writer queued for
``next_update`` applies *inside* the handler, after this snapshot, so such an update is logged
with ``version: match`` and then answered 409, which is what really happened.
"""

from __future__ import annotations

import re
from typing import Any

from controller.emulator.model import Machine
from controller.emulator.store import Store

_MACHINE_PATH = re.compile(r"^/v1/apps/(?P<app>[^/]+)/machines/(?P<id>[^/]+)(?P<rest>/.*)?$")
MANAGED_KEY = "reconciler/managed"


def describe(
    store: Store, method: str, path: str, nonce: str | None, body: Any
) -> dict[str, Any] | None:
    """The audit record of a request on one machine, or None for any other request."""
    match = _MACHINE_PATH.match(path)
    if match is None:
        return None
    machine = store.machines.get(match["id"])
    if machine is None or machine.app != match["app"]:
        return None
    live = machine.live_lease(store.rt.now())
    if live is None:
        lease = "none"
    elif not nonce:
        lease = "missing"
    else:
        lease = "match" if nonce == live.nonce else "mismatch"
    metadata = machine.config.get("metadata") or {}
    is_update = method.upper() == "POST" and not match["rest"]
    return {
        "machine_version": machine.version,
        "managed": str(metadata.get(MANAGED_KEY, "")).lower() == "true",
        "lease": lease,
        "lease_owner": live.owner if live is not None else None,
        "version": _version(machine, body) if is_update else None,
    }


def _version(machine: Machine, body: Any) -> str:
    sent = body.get("current_version") if isinstance(body, dict) else None
    if not sent:
        return "absent"
    if sent == machine.version:
        return "match"
    if any(old.version == sent for old in machine.history):
        return "stale"
    return "unknown"
