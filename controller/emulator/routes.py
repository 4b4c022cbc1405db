"""The /v1 Machines API routes: parse the request, call the domain, render the response.

Thin by design: validation and rules live in ``machines.py``, ``apps.py``, ``leases.py`` and
``listing.py``; this module only maps HTTP (paths, query strings, the nonce header, status codes
from FLY_API.md section 1) onto them.  ``/wait`` is here because it is the one long-poll: it
re-checks the machine every ``wait_poll_seconds`` of clock time (sooner when a transition is due)
until the state is reached (200) or the timeout passes (408).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.emulator import (
    apierrors,
    apps,
    decoding,
    leases,
    lifecycle,
    listing,
    machines,
    secrets,
    views,
    volumes,
)
from controller.emulator.model import rfc3339
from controller.emulator.state import EmulatorState

Handler = Callable[[Request, EmulatorState], Awaitable[Response]]
WAIT_STATES = ("started", "stopped", "suspended", "destroyed", "failed", "settled")
_GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


def api(
    handler: Handler, operation: decoding.Operation | None = None
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler: decode its query and body as the spec types them, hand it the emulator,
    render :class:`ApiError` as JSON."""

    async def endpoint(request: Request) -> Response:
        emulator: EmulatorState = request.app.state.emulator
        try:
            if operation is not None:
                decoding.check_query(operation, query(request))
                if operation.body is not None:
                    decoded = decoding.decode_body(operation, json_body(request))
                    request.scope["state"]["emulator.decoded"] = decoded
            return await handler(request, emulator)
        except apierrors.ApiError as exc:
            return JSONResponse(exc.body, exc.status, headers=exc.headers)

    return endpoint


def raw_body(request: Request) -> bytes:
    body = request.scope.get("state", {}).get("emulator.body", b"")
    return body if isinstance(body, bytes) else b""


def json_body(request: Request) -> Any:
    """The parsed JSON body (decoded against the spec when the operation has a body schema),
    None when empty; 400 with a Go-like message when malformed."""
    state = request.scope.get("state", {})
    if "emulator.decoded" in state:
        return state["emulator.decoded"]
    raw = raw_body(request)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        first_char = raw.strip()[:1].decode("latin-1")
        raise apierrors.bad_request(
            f"invalid character {first_char!r} looking for beginning of value"
        ) from None


def query(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


def identity(request: Request) -> str:
    return str(request.scope.get("state", {}).get("emulator.identity", "unknown@tokens.fly.io"))


def nonce(request: Request) -> str | None:
    return request.headers.get(leases.NONCE_HEADER) or None


def params(request: Request) -> tuple[str, str]:
    return request.path_params["app"], request.path_params["machine_id"]


def ok() -> JSONResponse:
    return JSONResponse({"ok": True})


def _not_just_created(emu: EmulatorState, created_mono: float, machine_id: str) -> None:
    """FLY_API.md 1.6: right after a create, GET/wait may briefly 404."""
    window = emu.behaviour.read_after_create_404_seconds
    if window > 0 and emu.rt.now() - created_mono < window:
        raise apierrors.machine_not_found(machine_id)


# ----------------------------------------------------------------------------- apps
async def list_apps(request: Request, emu: EmulatorState) -> Response:
    found = apps.list_apps(emu.store, request.query_params.get("org_slug"))
    listed = [views.app_listing(a, emu.store) for a in found]
    return JSONResponse({"total_apps": len(listed), "apps": listed})


async def create_app(request: Request, emu: EmulatorState) -> Response:
    app = apps.create_app(emu.store, json_body(request))
    body = {"id": app.name, "created_at": rfc3339(app.created_at)}  # SPEC-NEW (FLY_API.md 1.10)
    return JSONResponse(body, 201)


async def get_app(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse(views.app(emu.store.app(request.path_params["app"])))


async def delete_app(request: Request, emu: EmulatorState) -> Response:
    apps.delete_app(emu.store, request.path_params["app"])
    return Response(status_code=202)


# ----------------------------------------------------------------------------- machines
async def list_machines(request: Request, emu: EmulatorState) -> Response:
    q = query(request)
    page, next_cursor = listing.list_machines(emu.store, request.path_params["app"], q)
    summary = listing.truthy(q, "summary")
    include_lease = listing.truthy(q, "include_leases")
    body = [views.machine(m, emu.rt, summary=summary, include_lease=include_lease) for m in page]
    headers = {"fly-next-cursor": next_cursor} if next_cursor else None
    return JSONResponse(body, headers=headers)


async def create_machine(request: Request, emu: EmulatorState) -> Response:
    machine, lease = machines.create(
        emu.store, request.path_params["app"], json_body(request), owner=identity(request)
    )
    nonce_value = lease.nonce if lease is not None else None
    return JSONResponse(views.machine(machine, emu.rt, nonce=nonce_value))


async def get_machine(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    machine = emu.store.machine(app, machine_id)
    _not_just_created(emu, machine.created_mono, machine_id)
    wanted = request.query_params.get("version")
    if wanted and wanted != machine.version:
        for old in machine.history:
            if old.version == wanted:
                return JSONResponse(views.old_version(machine, old))
        raise apierrors.generic(404, f"machine version not found: {wanted}")
    include_lease = listing.truthy(query(request), "include_leases")
    return JSONResponse(views.machine(machine, emu.rt, include_lease=include_lease))


async def update_machine(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    body = json_body(request)
    emu.store.writable(app, machine_id)
    emu.writers.fire(emu.store, app, machine_id, "next_update")
    machine = machines.update(emu.store, app, machine_id, body, nonce=nonce(request))
    return JSONResponse(views.machine(machine, emu.rt))


async def destroy_machine(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    q = query(request)
    force = listing.truthy(q, "force") or listing.truthy(q, "kill")
    machines.destroy(emu.store, app, machine_id, force=force, nonce=nonce(request))
    return ok()


async def start_machine(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    previous = machines.start(emu.store, app, machine_id, nonce=nonce(request))
    return JSONResponse({"previous_state": previous})


async def stop_machine(request: Request, emu: EmulatorState) -> Response:
    """The optional StopRequest body was decoded by :func:`api` (FLY_API.md 1.5)."""
    app, machine_id = params(request)
    machines.stop(emu.store, app, machine_id, nonce=nonce(request))
    return ok()


async def suspend_machine(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    machines.suspend(emu.store, app, machine_id, nonce=nonce(request))
    return ok()


async def restart_machine(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    raw = request.query_params.get("timeout")
    if raw and not (raw.isdigit() or _GO_DURATION.match(raw)):
        raise apierrors.bad_request(f"invalid timeout: {raw!r}")
    machines.restart(emu.store, app, machine_id, nonce=nonce(request))
    return ok()


async def cordon_machine(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    machines.cordon(emu.store, app, machine_id, cordoned=True, nonce=nonce(request))
    return ok()


async def uncordon_machine(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    machines.cordon(emu.store, app, machine_id, cordoned=False, nonce=nonce(request))
    return ok()


async def machine_versions(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    return JSONResponse(views.versions(emu.store.machine(app, machine_id)))


async def machine_events(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    raw = request.query_params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= lifecycle.EVENT_CAP:
        raise apierrors.bad_request(f"limit must be between 1 and {lifecycle.EVENT_CAP}")
    return JSONResponse(views.events(emu.store.machine(app, machine_id), int(raw)))


# ----------------------------------------------------------------------------- wait
def _wait_args(request: Request, emu: EmulatorState) -> tuple[list[str], int, str | None]:
    q = query(request)
    states = [s.strip() for v in q.get("state") or ["started"] for s in v.split(",") if s.strip()]
    for state in states:
        if state not in WAIT_STATES:
            raise apierrors.bad_request(f"invalid_argument: invalid state {state!r}")
    limit = emu.behaviour.wait_max_seconds
    raw = listing.first(q, "timeout")
    try:
        seconds = int(raw) if raw is not None else emu.behaviour.wait_default_seconds
    except ValueError:
        raise apierrors.bad_request(f"invalid_argument: invalid timeout {raw!r}") from None
    if not 1 <= seconds <= limit:
        raise apierrors.bad_request(
            f"invalid_argument: timeout must be between 1 and {limit} seconds"
        )
    version = listing.first(q, "version") or listing.first(q, "instance_id")
    if "stopped" in states and not version and emu.behaviour.wait_stopped_requires_version:
        raise apierrors.bad_request(
            "invalid_argument: instance_id or version is required when waiting for stopped state"
        )
    return states, min(seconds, limit), version


def _reached(state: str, wanted: list[str]) -> bool:
    return state in wanted or ("settled" in wanted and state in lifecycle.SETTLED_STATES)


async def wait_machine(request: Request, emu: EmulatorState) -> Response:
    """GET .../wait (FLY_API.md 1.6): 200 when reached, 408 after the timeout."""
    app, machine_id = params(request)
    states, seconds, version = _wait_args(request, emu)
    machine = emu.store.machine(app, machine_id)
    _not_just_created(emu, machine.created_mono, machine_id)
    known = {v.version for v in machine.history} | {machine.version}
    if version and version not in known:
        raise apierrors.generic(404, f"machine version not found: {version}")
    wanted = ",".join(states)
    rt = emu.rt
    deadline = rt.now() + seconds
    poll = emu.behaviour.wait_poll_seconds
    for _ in range(int(seconds / poll) + 1000):
        machine = emu.store.machine(app, machine_id)
        if version and version != machine.version:
            # The version waited on was replaced (by this client or someone else).
            raise apierrors.bad_request(
                f"machine failed to reach desired state, {wanted}, currently replaced"
            )
        if _reached(machine.state, states):
            event_id = machine.events[-1].id if machine.events else None
            body = {"ok": True, "state": machine.state, "version": machine.version}
            return JSONResponse(body | {"event_id": event_id})
        remaining = deadline - rt.now()
        if remaining <= 0:
            break
        delay = min(poll, remaining)
        due = lifecycle.next_change_in(machine, rt)
        if due is not None:
            delay = min(delay, max(due, 1e-6))
        await emu.clock.sleep(delay)
    raise apierrors.generic(
        408, f"machine failed to reach desired state, {wanted}, currently {machine.state}"
    )


# ----------------------------------------------------------------------------- leases
def _ttl(request: Request, body: Any, emu: EmulatorState) -> int:
    raw: Any = request.query_params.get("ttl")
    if raw is None and isinstance(body, dict):
        raw = body.get("ttl")
    if raw is None:
        return emu.behaviour.lease_default_ttl_seconds
    try:
        ttl = int(raw)
    except (TypeError, ValueError):
        raise apierrors.lease_envelope(400, f"invalid ttl: {raw!r}", "invalid") from None
    if ttl < 1:
        raise apierrors.lease_envelope(400, "ttl must be a positive number of seconds", "invalid")
    return ttl


async def acquire_lease(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    body = json_body(request)
    ttl = _ttl(request, body, emu)
    description = body.get("description", "") if isinstance(body, dict) else ""
    emu.store.writable(app, machine_id)
    emu.writers.fire(emu.store, app, machine_id, "next_lease")
    machine = emu.store.writable(app, machine_id)
    lease = leases.acquire(
        machine,
        emu.rt,
        owner=identity(request),
        ttl=ttl,
        description=str(description or ""),
        nonce=nonce(request),
    )
    return JSONResponse(leases.envelope(lease), 201)


async def get_lease(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    return JSONResponse(leases.envelope(leases.current(emu.store.machine(app, machine_id), emu.rt)))


async def release_lease(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    leases.release(emu.store.machine(app, machine_id), emu.rt, nonce(request))
    return JSONResponse({"status": "success", "data": {"ok": True}})


# ----------------------------------------------------------------------------- metadata
async def get_metadata(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    return JSONResponse(dict(emu.store.machine(app, machine_id).config.get("metadata") or {}))


async def patch_metadata(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    machines.patch_metadata(emu.store, app, machine_id, json_body(request), nonce=nonce(request))
    return Response(status_code=204)


async def get_metadata_key(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    metadata = emu.store.machine(app, machine_id).config.get("metadata") or {}
    key = request.path_params["key"]
    if key not in metadata:
        raise apierrors.generic(404, f"metadata key not found: {key}")
    return JSONResponse({"value": metadata[key]})


async def set_metadata(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    key = request.path_params["key"]
    body = json_body(request)
    machines.set_metadata(emu.store, app, machine_id, key, body, nonce=nonce(request))
    return Response(status_code=204)


async def delete_metadata(request: Request, emu: EmulatorState) -> Response:
    app, machine_id = params(request)
    key = request.path_params["key"]
    machines.delete_metadata(emu.store, app, machine_id, key, nonce=nonce(request))
    return Response(status_code=204)


# ----------------------------------------------------------------------------- volumes
async def list_volumes(request: Request, emu: EmulatorState) -> Response:
    app = request.path_params["app"]
    emu.store.app(app)
    found = [v for v in emu.store.volumes.values() if v.app == app]
    return JSONResponse([views.volume(v) for v in found])


async def create_volume(request: Request, emu: EmulatorState) -> Response:
    volume = apps.create_volume(emu.store, request.path_params["app"], json_body(request))
    return JSONResponse(views.volume(volume))


async def get_volume(request: Request, emu: EmulatorState) -> Response:
    p = request.path_params
    return JSONResponse(views.volume(emu.store.volume(p["app"], p["volume_id"])))


async def delete_volume(request: Request, emu: EmulatorState) -> Response:
    p = request.path_params
    return JSONResponse(views.volume(apps.delete_volume(emu.store, p["app"], p["volume_id"])))


async def update_volume(request: Request, emu: EmulatorState) -> Response:
    p = request.path_params
    volume = volumes.update(emu.store, p["app"], p["volume_id"], json_body(request))
    return JSONResponse(views.volume(volume))


async def extend_volume(request: Request, emu: EmulatorState) -> Response:
    p = request.path_params
    volume, needs_restart = volumes.extend(emu.store, p["app"], p["volume_id"], json_body(request))
    return JSONResponse({"volume": views.volume(volume), "needs_restart": needs_restart})


async def list_snapshots(request: Request, emu: EmulatorState) -> Response:
    p = request.path_params
    volume = emu.store.volume(p["app"], p["volume_id"])
    return JSONResponse([volumes.snapshot_view(s) for s in volume.snapshots])


async def create_snapshot(request: Request, emu: EmulatorState) -> Response:
    p = request.path_params
    volumes.snapshot(emu.store, p["app"], p["volume_id"])
    return Response(status_code=200)  # the spec declares no body


# ----------------------------------------------------------------------------- secrets
async def list_secrets(request: Request, emu: EmulatorState) -> Response:
    app = emu.store.app(request.path_params["app"])
    return JSONResponse({"secrets": secrets.listing(app)})


async def update_secrets(request: Request, emu: EmulatorState) -> Response:
    app = secrets.update(emu.store, request.path_params["app"], json_body(request))
    return JSONResponse({"secrets": secrets.listing(app), "version": app.secrets_version})


async def delete_secret(request: Request, emu: EmulatorState) -> Response:
    p = request.path_params
    app = secrets.delete(emu.store, p["app"], p["name"])
    return JSONResponse({"version": app.secrets_version})


# ----------------------------------------------------------------------------- not emulated
NOT_EMULATED: tuple[tuple[str, str], ...] = (
    ("/v1/apps/{app}/machines/{machine_id}/exec", "POST"),
    ("/v1/apps/{app}/machines/{machine_id}/ps", "GET"),
    ("/v1/apps/{app}/machines/{machine_id}/signal", "POST"),
    ("/v1/apps/{app}/secrets/{label}/type/{secret_type}", "POST"),
    ("/v1/apps/{app}/secrets/{label}/type/{secret_type}/generate", "POST"),
    ("/v1/tokens/kms", "POST"),
    ("/v1/tokens/oidc", "POST"),
)
"""Spec operations the emulator does not model: they answer 501, never a 404 Fly would not send."""


def not_emulated(operation_id: str) -> Handler:
    async def handler(request: Request, emu: EmulatorState) -> Response:
        raise apierrors.generic(501, f"not emulated: {operation_id}")

    handler.__name__ = f"not_emulated_{operation_id}"
    return handler


M = "/v1/apps/{app}/machines/{machine_id}"


def api_routes() -> list[Route]:
    """Every /v1 route, with its methods."""
    table: list[tuple[str, Handler, list[str]]] = [
        ("/v1/apps", list_apps, ["GET"]),
        ("/v1/apps", create_app, ["POST"]),
        ("/v1/apps/{app}", get_app, ["GET"]),
        ("/v1/apps/{app}", delete_app, ["DELETE"]),
        ("/v1/apps/{app}/machines", list_machines, ["GET"]),
        ("/v1/apps/{app}/machines", create_machine, ["POST"]),
        (M, get_machine, ["GET"]),
        (M, update_machine, ["POST"]),
        (M, destroy_machine, ["DELETE"]),
        (M + "/start", start_machine, ["POST"]),
        (M + "/stop", stop_machine, ["POST"]),
        (M + "/suspend", suspend_machine, ["POST"]),
        (M + "/restart", restart_machine, ["POST"]),
        (M + "/cordon", cordon_machine, ["POST"]),
        (M + "/uncordon", uncordon_machine, ["POST"]),
        (M + "/wait", wait_machine, ["GET"]),
        (M + "/lease", get_lease, ["GET"]),
        (M + "/lease", acquire_lease, ["POST"]),
        (M + "/lease", release_lease, ["DELETE"]),
        (M + "/metadata", get_metadata, ["GET"]),
        (M + "/metadata", patch_metadata, ["PATCH"]),
        (M + "/metadata/{key}", get_metadata_key, ["GET"]),
        (M + "/metadata/{key}", set_metadata, ["POST"]),
        (M + "/metadata/{key}", delete_metadata, ["DELETE"]),
        (M + "/versions", machine_versions, ["GET"]),
        (M + "/events", machine_events, ["GET"]),
        ("/v1/apps/{app}/volumes", list_volumes, ["GET"]),
        ("/v1/apps/{app}/volumes", create_volume, ["POST"]),
        ("/v1/apps/{app}/volumes/{volume_id}", get_volume, ["GET"]),
        ("/v1/apps/{app}/volumes/{volume_id}", delete_volume, ["DELETE"]),
        ("/v1/apps/{app}/volumes/{volume_id}", update_volume, ["PUT"]),
        ("/v1/apps/{app}/volumes/{volume_id}/extend", extend_volume, ["PUT"]),
        ("/v1/apps/{app}/volumes/{volume_id}/snapshots", list_snapshots, ["GET"]),
        ("/v1/apps/{app}/volumes/{volume_id}/snapshots", create_snapshot, ["POST"]),
        ("/v1/apps/{app}/secrets", list_secrets, ["GET"]),
        ("/v1/apps/{app}/secrets", update_secrets, ["POST"]),
        ("/v1/apps/{app}/secrets/{name}", delete_secret, ["DELETE"]),
    ]
    for path, method in NOT_EMULATED:
        found = decoding.operation_for(method, path)
        operation_id = found.operation_id if found is not None else path
        table.append((path, not_emulated(operation_id), [method]))
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for path, handler, methods in table:
        for method in methods:
            modelled = not handler.__name__.startswith("not_emulated_")
            operation = decoding.operation_for(method, path) if modelled else None
            by_path.setdefault(path, {})[method] = api(handler, operation)
    # One route per path, so a wrong method gets a 405 whose Allow lists every method of the path.
    return [
        Route(path, _dispatch(handlers), methods=list(handlers), name=path)
        for path, handlers in by_path.items()
    ]


def _dispatch(
    handlers: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return endpoint
