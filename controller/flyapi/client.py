"""``MachinesClient``: one typed async method per Fly Machines API endpoint the controller uses.

The ``httpx.AsyncClient`` is injected (tests pass ``httpx.AsyncClient(transport=MockTransport(...),
base_url=...)``) and its ``base_url`` is the API root, e.g. ``https://api.machines.dev``; every
path here starts with ``/v1``.  :meth:`MachinesClient.from_settings` builds one for production.

Errors: each method returns a parsed model or raises exactly one
:class:`~controller.core.errors.FlyAPIError` subclass (see :mod:`controller.core.errors`); httpx
exceptions never escape.

Retries (inside the client, :class:`~controller.flyapi.exchange.Exchange`): every call is
retried when Fly provably did nothing (connect failure; 429, honouring ``Retry-After`` as a
floor).  Transient failures where the request may have been acted on (5xx, 408 outside
``/wait``, read timeouts, dropped connections) are retried only for calls whose repetition is
harmless:

* retried: ``get_app``, ``list_machines[_page]``, ``get_machine``, ``wait_machine``,
  ``get_lease``, ``refresh_lease`` (same nonce, just extends), ``release_lease`` (a second
  release answers "lease not found"), ``destroy_machine`` (a second destroy answers 404), and
  ``update_machine`` **only when ``current_version`` is given** (if the first attempt committed,
  the repeat is refused with :class:`~controller.core.errors.VersionConflict` and nothing changes);
* not retried: ``create_machine`` (it may have created the machine: the executor re-lists by
  its launch tag first, FLY_API.md 1.3 "silent success"), ``create_app``, ``acquire_lease``
  (a repeat would collide with our own new lease), ``start_machine`` and ``stop_machine``
  (their answers depend on the state the first attempt may have changed), and
  ``update_machine`` without ``current_version`` (a repeat would restart the machine again).

Rate limiting (Fly's documented limits, FLY_API.md 5) happens before every attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from controller.clock import Clock
from controller.core.errors import ConfigError, InvalidResponse
from controller.core.retry import RetryPolicy
from controller.flyapi.endpoints import (
    ENDPOINTS,
    app_path,
    csv,
    env_values,
    list_params,
    machine_path,
    machine_scope,
    nonce_header,
    wait_seconds,
)
from controller.flyapi.exchange import Exchange, ResponseEvent
from controller.flyapi.inflight import ApiCalls
from controller.flyapi.lease_calls import LeaseCalls
from controller.flyapi.models import (
    ActionResult,
    App,
    Machine,
    MachinesPage,
    Volume,
    WaitResult,
)
from controller.flyapi.ratelimit import RateLimiter, RateLimits
from controller.flyapi.responses import decode, decode_list
from controller.settings import Settings

__all__ = ["MachinesClient"]

NEXT_CURSOR_HEADER = "fly-next-cursor"


class MachinesClient(LeaseCalls):
    """Typed async client for the Fly Machines API (see the module docstring for retries).

    The lease methods (``get_lease``, ``acquire_lease``, ``refresh_lease``, ``release_lease``)
    come from :class:`~controller.flyapi.lease_calls.LeaseCalls`.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token: SecretStr,
        clock: Clock,
        rng: random.Random,
        limits: RateLimits | None = None,
        retry: RetryPolicy | None = None,
        on_response: Callable[[ResponseEvent], None] | None = None,
        wait_timeout_margin: float = 15.0,
        max_pages: int = 1000,
    ) -> None:
        if not token.get_secret_value().strip():
            raise ConfigError("the Fly API token is empty")
        self._http = http
        self._owns_http = False
        self._limiter = RateLimiter(limits or RateLimits(), clock)
        self._exchange = Exchange(
            http,
            token=token,
            clock=clock,
            rng=rng,
            limiter=self._limiter,
            policy=retry or RetryPolicy(),
            on_response=on_response,
        )
        self._wait_margin = wait_timeout_margin
        self._max_pages = max_pages

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        clock: Clock,
        rng: random.Random,
        on_response: Callable[[ResponseEvent], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> Self:
        """Build the client and its own ``httpx.AsyncClient`` (closed by :meth:`aclose`)."""
        if settings.api_token is None:
            raise ConfigError(
                "no Fly API token: set FLY_API_TOKEN or MACHINE_RECONCILER_API_TOKEN_FILE"
            )
        http = httpx.AsyncClient(
            base_url=settings.api_url,
            timeout=httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout),
            follow_redirects=False,  # never replay the bearer token to another location
            transport=transport,
        )
        client = cls(
            http,
            token=settings.api_token,
            clock=clock,
            rng=rng,
            limits=RateLimits.from_settings(settings),
            retry=settings.retry_policy(),
            on_response=on_response,
            wait_timeout_margin=settings.wait_timeout_margin,
            max_pages=settings.list_max_pages,
        )
        client._owns_http = True
        return client

    def __repr__(self) -> str:
        return f"<MachinesClient base_url={str(self._http.base_url)!r}>"

    async def aclose(self) -> None:
        """Close the HTTP client if :meth:`from_settings` created it (injected ones are left)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def calls_in_progress(self) -> int:
        """API calls started and not yet returned (a hung request counts)."""
        return self._exchange.calls_in_progress

    def api_calls(self) -> ApiCalls:
        """The calls in flight with their own deadlines, the last answer and the first failure
        since (:mod:`controller.flyapi.inflight`): what liveness needs to tell a long-poll
        waiting as it should from an API that stopped answering."""
        return self._exchange.ledger.snapshot()

    def silence_grace(self) -> float:
        """How long after a failed attempt the API may stay silent before it counts as not
        answering: the longest sleep before a retry (the backoff cap, or the floor after a
        504) plus one request deadline for that retry to answer.  The default request
        deadline, not a long-poll's: a ``/wait`` sent after the API went silent does not earn
        it another minute."""
        policy = self._exchange.policy
        sleep = max(policy.transient.cap, policy.gateway_timeout_min)
        return sleep + self._exchange.deadline()

    def stop_writes(self) -> None:
        """Shutdown began: from now on a write that has not been sent yet (one waiting in the
        rate limiter or between retries) raises :class:`~controller.core.errors.ShuttingDown`
        instead of going out.  Reads, lease refreshes and lease releases still go out, so
        operations in flight can finish and give their leases back."""
        self._exchange.stopping = True

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy the client's calls follow."""
        return self._exchange.policy

    @property
    def rate_limiter(self) -> RateLimiter:
        """The client-side limiter (shared by every call of this client)."""
        return self._limiter

    # ------------------------------------------------------------------ helpers

    async def _call(self, endpoint: str, path: str, *, scope: str, **kwargs: Any) -> httpx.Response:
        return await self._exchange.call(ENDPOINTS[endpoint], path, scope=scope, **kwargs)

    # ------------------------------------------------------------------ apps

    async def get_app(self, app: str) -> App:
        """``GET /v1/apps/{app}``."""
        response = await self._call("apps.get", app_path(app), scope=app)
        return decode(App, response, "apps.get")

    async def create_app(
        self,
        app_name: str,
        org_slug: str,
        *,
        network: str | None = None,
        enable_subdomains: bool | None = None,
    ) -> App:
        """``POST /v1/apps`` with SPEC-2025's ``app_name`` + ``org_slug``.  Not retried.

        The saved spec answers 201 with no body; newer APIs return ``{id, created_at}``.
        """
        body: dict[str, Any] = {"app_name": app_name, "org_slug": org_slug}
        if network is not None:
            body["network"] = network
        if enable_subdomains is not None:
            body["enable_subdomains"] = enable_subdomains
        response = await self._call("apps.create", "/v1/apps", scope=org_slug, json=body)
        created = decode(App, response, "apps.create")
        return created if created.name else created.model_copy(update={"name": app_name})

    # ------------------------------------------------------------------ volumes

    async def list_volumes(self, app: str) -> tuple[Volume, ...]:
        """``GET /v1/apps/{app}/volumes``."""
        response = await self._call("volumes.list", f"{app_path(app)}/volumes", scope=app)
        return decode_list(Volume, response, "volumes.list")

    async def create_volume(
        self,
        app: str,
        *,
        name: str,
        region: str,
        size_gb: int,
        encrypted: bool | None = None,
    ) -> Volume:
        """``POST /v1/apps/{app}/volumes``.  Not retried after ambiguous failures (a volume
        may have been made anyway: the caller lists before trying again)."""
        body: dict[str, Any] = {"name": name, "region": region, "size_gb": size_gb}
        if encrypted is not None:
            body["encrypted"] = encrypted
        response = await self._call(
            "volumes.create", f"{app_path(app)}/volumes", scope=app, json=body
        )
        return decode(Volume, response, "volumes.create")

    async def destroy_volume(self, app: str, volume_id: str) -> None:
        """``DELETE /v1/apps/{app}/volumes/{id}`` (412 while attached to a live machine)."""
        await self._call(
            "volumes.destroy",
            f"{app_path(app)}/volumes/" + quote(volume_id, safe=""),
            scope=app,
        )

    # ------------------------------------------------------------------ machines: read

    async def list_machines_page(
        self,
        app: str,
        *,
        region: str | None = None,
        state: str | Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        include_deleted: bool = False,
        summary: bool = False,
        include_leases: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> MachinesPage:
        """One ``GET /v1/apps/{app}/machines`` page; ``next_cursor`` from ``fly-next-cursor``.

        ``metadata`` filters on exact ``config.metadata`` values (``metadata.<key>=<value>``,
        all must match); ``limit`` (1..1000, advisory) enables pagination.
        """
        params = list_params(
            region=region,
            state=state,
            metadata=metadata,
            include_deleted=include_deleted,
            summary=summary,
            include_leases=include_leases,
            limit=limit,
            cursor=cursor,
        )
        path = f"{app_path(app)}/machines"
        response = await self._call("machines.list", path, scope=app, params=params)
        machines = decode_list(Machine, response, "machines.list")
        next_cursor = response.headers.get(NEXT_CURSOR_HEADER) or None
        return MachinesPage(machines=machines, next_cursor=next_cursor)

    async def list_machines(
        self,
        app: str,
        *,
        region: str | None = None,
        state: str | Sequence[str] | None = None,
        metadata: Mapping[str, str] | None = None,
        include_deleted: bool = False,
        summary: bool = False,
        include_leases: bool = False,
        limit: int | None = None,
    ) -> list[Machine]:
        """Every machine, following ``fly-next-cursor`` to the end (at most ``max_pages``).

        Without ``limit`` Fly answers in one page.  A machine seen on two pages (the list moved
        while paging) is kept once, with its latest data.  A repeated cursor or too many pages
        raises :class:`~controller.core.errors.InvalidResponse`.
        """
        found: dict[str, Machine] = {}
        seen: set[str] = set()
        cursor: str | None = None
        for _ in range(self._max_pages):
            page = await self.list_machines_page(
                app,
                region=region,
                state=state,
                metadata=metadata,
                include_deleted=include_deleted,
                summary=summary,
                include_leases=include_leases,
                limit=limit,
                cursor=cursor,
            )
            for machine in page.machines:
                found[machine.id] = machine
            if page.next_cursor is None:
                return list(found.values())
            if page.next_cursor in seen:
                raise InvalidResponse(
                    method="GET",
                    path=f"{app_path(app)}/machines",
                    status=200,
                    detail="pagination cursor repeated",
                )
            seen.add(page.next_cursor)
            cursor = page.next_cursor
        raise InvalidResponse(
            method="GET",
            path=f"{app_path(app)}/machines",
            status=200,
            detail=f"pagination did not end within {self._max_pages} pages",
        )

    async def get_machine(
        self, app: str, machine_id: str, *, version: str | None = None
    ) -> Machine:
        """``GET /v1/apps/{app}/machines/{id}``; ``version`` asks for that version (SPEC-NEW)."""
        params = [("version", version)] if version else []
        response = await self._call(
            "machines.get",
            machine_path(app, machine_id),
            scope=machine_scope(app, machine_id),
            params=params,
        )
        return decode(Machine, response, "machines.get")

    # ------------------------------------------------------------------ machines: write

    async def create_machine(
        self,
        app: str,
        *,
        config: Mapping[str, Any],
        region: str | None = None,
        name: str | None = None,
        skip_launch: bool = False,
        skip_service_registration: bool = False,
        lease_ttl: int | None = None,
        min_secrets_version: int | None = None,
    ) -> Machine:
        """``POST /v1/apps/{app}/machines``.  With ``lease_ttl`` the answer carries ``nonce``.

        NEVER retried after an ambiguous failure (5xx, 408, read timeout, dropped connection):
        the machine may exist anyway, so the caller must re-list by its launch tag before
        trying again.  Retried only on connect failures and 429, where nothing happened.
        """
        body: dict[str, Any] = {"config": dict(config)}
        if region is not None:
            body["region"] = region
        if name is not None:
            body["name"] = name
        if skip_launch:
            body["skip_launch"] = True
        if skip_service_registration:
            body["skip_service_registration"] = True
        if lease_ttl is not None:
            body["lease_ttl"] = int(lease_ttl)
        if min_secrets_version is not None:
            body["min_secrets_version"] = int(min_secrets_version)
        response = await self._call(
            "machines.create",
            f"{app_path(app)}/machines",
            scope=app,
            json=body,
            sensitive=env_values(config),
        )
        return decode(Machine, response, "machines.create")

    async def update_machine(
        self,
        app: str,
        machine_id: str,
        *,
        config: Mapping[str, Any],
        current_version: str | None = None,
        nonce: str | None = None,
        skip_launch: bool = False,
        skip_service_registration: bool = False,
        min_secrets_version: int | None = None,
    ) -> Machine:
        """``POST /v1/apps/{app}/machines/{id}``: full replacement of the config.

        ``current_version`` guards against concurrent writers (409
        :class:`~controller.core.errors.VersionConflict`); ``nonce`` goes in the
        ``fly-machine-lease-nonce`` header.  Retried after ambiguous failures only when
        ``current_version`` is given.
        """
        body: dict[str, Any] = {"config": dict(config)}
        if current_version is not None:
            body["current_version"] = current_version
        if skip_launch:
            body["skip_launch"] = True
        if skip_service_registration:
            body["skip_service_registration"] = True
        if min_secrets_version is not None:
            body["min_secrets_version"] = int(min_secrets_version)
        response = await self._call(
            "machines.update",
            machine_path(app, machine_id),
            scope=machine_scope(app, machine_id),
            json=body,
            headers=nonce_header(nonce),
            idempotent=current_version is not None,
            sensitive=env_values(config),
        )
        return decode(Machine, response, "machines.update")

    async def start_machine(
        self, app: str, machine_id: str, *, nonce: str | None = None
    ) -> ActionResult:
        """``POST .../{id}/start``.  Not retried after ambiguous failures."""
        return await self._action("machines.start", app, machine_id, "/start", nonce=nonce)

    async def restart_machine(
        self, app: str, machine_id: str, *, nonce: str | None = None
    ) -> ActionResult:
        """``POST .../{id}/restart`` (a started machine: stop, then start).  Not retried after
        ambiguous failures; a 429 (Fly's per-machine restart limit) is waited out and resent."""
        return await self._action("machines.restart", app, machine_id, "/restart", nonce=nonce)

    async def set_metadata(
        self, app: str, machine_id: str, key: str, value: str, *, nonce: str | None = None
    ) -> None:
        """``POST .../{id}/metadata/{key}`` with ``{"value": value}`` (204).  Idempotent."""
        await self._call(
            "machines.metadata.set",
            machine_path(app, machine_id) + "/metadata/" + quote(key, safe=""),
            scope=machine_scope(app, machine_id),
            json={"value": value},
            headers=nonce_header(nonce),
        )

    async def stop_machine(
        self,
        app: str,
        machine_id: str,
        *,
        signal: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - Fly's stop grace period, sent as-is
        nonce: str | None = None,
    ) -> ActionResult:
        """``POST .../{id}/stop`` with a ``StopRequest`` body (always sent: Fly answers 400 to a
        missing body).  ``timeout`` seconds go out as a Go duration string (``"30s"``)."""
        body: dict[str, Any] = {}
        if signal is not None:
            body["signal"] = signal
        if timeout is not None:
            body["timeout"] = f"{max(0.0, timeout):g}s"
        return await self._action("machines.stop", app, machine_id, "/stop", nonce=nonce, json=body)

    async def destroy_machine(
        self, app: str, machine_id: str, *, force: bool = False, nonce: str | None = None
    ) -> ActionResult:
        """``DELETE .../{id}`` (``?force=true`` kills a running machine).

        Retried after ambiguous failures; if the first attempt had already destroyed the
        machine, the repeat raises :class:`~controller.core.errors.NotFound`, which means "gone".
        """
        params = [("force", "true")] if force else []
        response = await self._call(
            "machines.destroy",
            machine_path(app, machine_id),
            scope=machine_scope(app, machine_id),
            params=params,
            headers=nonce_header(nonce),
        )
        return decode(ActionResult, response, "machines.destroy")

    async def _action(
        self,
        endpoint: str,
        app: str,
        machine_id: str,
        suffix: str,
        *,
        nonce: str | None,
        json: Mapping[str, Any] | None = None,
    ) -> ActionResult:
        response = await self._call(
            endpoint,
            machine_path(app, machine_id) + suffix,
            scope=machine_scope(app, machine_id),
            json=json,
            headers=nonce_header(nonce),
        )
        return decode(ActionResult, response, endpoint)

    async def wait_machine(
        self,
        app: str,
        machine_id: str,
        *,
        state: str | Sequence[str] = "started",
        version: str | None = None,
        timeout: float,  # noqa: ASYNC109 - the server-side long-poll length, sent to Fly
    ) -> WaitResult:
        """``GET .../{id}/wait``: block until the machine reaches ``state`` (server side).

        ``timeout`` is clamped to 1..60 s and sent as whole seconds; the HTTP timeout is that
        plus a margin.  ``version`` is sent both as ``version`` (SPEC-NEW) and ``instance_id``
        (SPEC-2025; required for ``stopped`` on older APIs).  Raises
        :class:`~controller.core.errors.WaitTimeout` (408) when the state was not reached: loop.
        """
        seconds = wait_seconds(timeout)
        params = [
            ("state", csv(state)),
            ("timeout", str(seconds)),
        ]
        if version:
            params += [("version", version), ("instance_id", version)]
        response = await self._call(
            "machines.wait",
            machine_path(app, machine_id) + "/wait",
            scope=machine_scope(app, machine_id),
            params=params,
            http_timeout=seconds + self._wait_margin,
        )
        return decode(WaitResult, response, "machines.wait")
