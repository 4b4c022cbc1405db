"""Machine leases: cooperative locks with a TTL on the clock, a nonce and a holder (FLY_API.md 1.7).

Rules emulated:

* ``POST .../lease`` takes ``ttl`` from the query string (what fly-go sends) or the JSON body (what
  the docs show).  With no live lease it creates one (201, new nonce) whether or not a nonce header
  was sent, so a client refreshing an expired lease gets a *new* nonce, which is exactly what
  flyctl checks for ("unexpectedly received a new nonce").  With a live lease, the matching
  ``fly-machine-lease-nonce`` header refreshes it (same nonce, new expiry); anything else is 409
  "lease currently held by".
* ``GET`` returns the live lease including its nonce (leases are cooperative) or 404
  "lease not found"; ``DELETE`` needs the live lease's nonce, otherwise 404 "lease not found".
* Writes on a machine with a live lease need the matching nonce header (409 otherwise); an
  expired lease blocks nothing, and a nonce header sent when no lease is live is ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controller.emulator import apierrors
from controller.emulator.model import Lease, Machine, Runtime, rfc3339

NONCE_HEADER = "fly-machine-lease-nonce"


def _expiry_text(lease: Lease, rt: Runtime) -> str:
    if rt.behaviour.lease_time_format == "rfc3339":
        return rfc3339(lease.expires_at)
    return datetime.fromtimestamp(lease.expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def held_error(machine: Machine, lease: Lease, rt: Runtime) -> apierrors.ApiError:
    """The 409 naming the current holder and expiry."""
    return apierrors.lease_held(machine.id, lease.owner, _expiry_text(lease, rt))


def grant(machine: Machine, rt: Runtime, *, owner: str, ttl: float, description: str = "") -> Lease:
    """Give ``owner`` a fresh lease for ``ttl`` seconds, replacing any previous one."""
    lease = Lease(
        nonce=rt.ids.nonce(),
        owner=owner,
        description=description,
        version=machine.version,
        expires_mono=rt.now() + ttl,
        expires_at=int(rt.wall() + ttl),
    )
    machine.lease = lease
    return lease


def acquire(
    machine: Machine,
    rt: Runtime,
    *,
    owner: str,
    ttl: int,
    description: str,
    nonce: str | None,
) -> Lease:
    """Create or refresh a lease (see the module docstring for the rules)."""
    live = machine.live_lease(rt.now())
    if live is None:
        return grant(machine, rt, owner=owner, ttl=ttl, description=description)
    if nonce and nonce == live.nonce:
        live.expires_mono = rt.now() + ttl
        live.expires_at = int(rt.wall() + ttl)
        live.version = machine.version
        if description:
            live.description = description
        return live
    raise held_error(machine, live, rt)


def current(machine: Machine, rt: Runtime) -> Lease:
    """The live lease, or 404 "lease not found"."""
    live = machine.live_lease(rt.now())
    if live is None:
        raise apierrors.lease_not_found()
    return live


def release(machine: Machine, rt: Runtime, nonce: str | None) -> None:
    """Drop the lease if ``nonce`` matches the live one; otherwise 404 "lease not found"."""
    live = machine.live_lease(rt.now())
    if live is None or not nonce or nonce != live.nonce:
        raise apierrors.lease_not_found()
    machine.lease = None


def check_write(machine: Machine, rt: Runtime, nonce: str | None) -> None:
    """Refuse a write on a machine leased by someone else (409, lease envelope)."""
    live = machine.live_lease(rt.now())
    if live is not None and nonce != live.nonce:
        raise held_error(machine, live, rt)


def envelope(lease: Lease) -> dict[str, Any]:
    """``{"status": "success", "data": {...}}``, the real response shape (DOCS-LEASE)."""
    return {
        "status": "success",
        "data": {
            "nonce": lease.nonce,
            "expires_at": lease.expires_at,
            "owner": lease.owner,
            "description": lease.description,
            "version": lease.version,
        },
    }


def stripped(lease: Lease) -> dict[str, Any]:
    """The ``StrippedLease`` shown by ``include_leases``: no nonce (SPEC-NEW)."""
    return {"description": lease.description, "expires_at": lease.expires_at, "owner": lease.owner}
