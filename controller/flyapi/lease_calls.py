"""The lease endpoints of :class:`~controller.flyapi.client.MachinesClient` (FLY_API.md 1.7).

A lease is Fly's per-machine lock: ``POST .../lease`` acquires it (409
:class:`~controller.core.errors.LeaseHeld` when someone else holds it), the same POST with our nonce
in ``fly-machine-lease-nonce`` refreshes it, ``DELETE`` releases it.  Fly answers in a wrapped
``{"status": "success", "data": {...}}`` envelope (the spec's flat ``Lease`` is accepted too).
This mixin holds only the request shapes; sending, errors and retries are the client's.
"""

from __future__ import annotations

from typing import Any

import httpx

from controller.core.errors import LeaseLost
from controller.flyapi.endpoints import machine_path, machine_scope, nonce_header
from controller.flyapi.exchange import REQUEST_ID_HEADER
from controller.flyapi.models import Lease
from controller.flyapi.responses import decode_lease

__all__ = ["LeaseCalls"]


class LeaseCalls:
    """Mixin: lease methods over the host class's ``_call``."""

    async def _call(self, endpoint: str, path: str, *, scope: str, **kwargs: Any) -> httpx.Response:
        raise NotImplementedError  # provided by MachinesClient

    async def get_lease(self, app: str, machine_id: str) -> Lease:
        """``GET .../{id}/lease``: the current lease (another holder's comes without nonce)."""
        response = await self._call(
            "leases.get",
            machine_path(app, machine_id) + "/lease",
            scope=machine_scope(app, machine_id),
        )
        return decode_lease(response, "leases.get")

    async def acquire_lease(
        self, app: str, machine_id: str, *, ttl: int, description: str | None = None
    ) -> Lease:
        """``POST .../{id}/lease`` with ``CreateLeaseRequest {ttl, description}``.

        (fly-go sends ``?ttl=`` instead; the spec and Fly's docs use the body, and the saved spec
        declares no such query parameter.)  Held by someone else:
        :class:`~controller.core.errors.LeaseHeld`.
        Not retried after ambiguous failures (a repeat would collide with our own new lease).
        """
        body: dict[str, Any] = {"ttl": int(ttl)}
        if description is not None:
            body["description"] = description
        response = await self._call(
            "leases.acquire",
            machine_path(app, machine_id) + "/lease",
            scope=machine_scope(app, machine_id),
            json=body,
        )
        return decode_lease(response, "leases.acquire")

    async def refresh_lease(self, app: str, machine_id: str, *, nonce: str, ttl: int) -> Lease:
        """Extend our lease: the same POST with our nonce in ``fly-machine-lease-nonce``.

        Raises :class:`~controller.core.errors.LeaseLost` when Fly answers with a different nonce
        (ours had lapsed and a new lease was made; its nonce is ``exc.new_nonce``).
        """
        path = machine_path(app, machine_id) + "/lease"
        response = await self._call(
            "leases.refresh",
            path,
            scope=machine_scope(app, machine_id),
            json={"ttl": int(ttl)},
            headers=nonce_header(nonce),
        )
        lease = decode_lease(response, "leases.refresh")
        if lease.nonce is not None and lease.nonce != nonce:
            raise LeaseLost(
                method="POST",
                path=path,
                status=response.status_code,
                request_id=response.headers.get(REQUEST_ID_HEADER),
                detail="refresh returned a different nonce: the previous lease had lapsed",
                new_nonce=lease.nonce,
            )
        return lease

    async def release_lease(self, app: str, machine_id: str, *, nonce: str) -> None:
        """``DELETE .../{id}/lease`` with our nonce.  "lease not found" raises
        :class:`~controller.core.errors.LeaseNotFound` (callers usually ignore it)."""
        await self._call(
            "leases.release",
            machine_path(app, machine_id) + "/lease",
            scope=machine_scope(app, machine_id),
            headers=nonce_header(nonce),
        )
