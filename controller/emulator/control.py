"""The control API under ``/_emulator/`` (JSON, no auth): reset, behaviour, fixtures, faults,
external writers, health overrides, clock and the request log.

=============================================  ===================================================
``POST /_emulator/reset``                      ``{"seed"?: int, "behaviour"?: {...}}``: wipe world,
                                               faults, log, rate buckets, writers (behaviour kept
                                               unless given)
``GET|PATCH /_emulator/behaviour``             read / partially update the toggles (422 if invalid)
``POST /_emulator/seed``                       ``{"apps", "volumes", "machines"}`` fixtures (see
                                               ``seeding.py``); returns the created ids
``GET /_emulator/state``                       full dump (leases with nonces, versions, faults)
``GET|DELETE /_emulator/requests``             the request log (see ``requestlog.py``)
``POST|GET|DELETE /_emulator/faults``          add (returns the rule with its ``id``) / list / clear
``DELETE /_emulator/faults/{id}``              remove one rule
``POST|GET /_emulator/external-writers``       ``{"kind": "bump_version"|"hold_lease", "app",
                                               "machine_id", "on"?, "seconds"?, "owner"?,
                                               "patch"?, "if_free"?}`` (see ``external.py``) /
                                               pending list
``POST /_emulator/checks``                     ``{"app", "machine_id", "checks": "auto"|"passing"|
                                               "failing"}``
``POST /_emulator/clock/advance``              ``{"seconds"}``; only for a clock with ``advance``
                                               (``FakeClock``), else 400
=============================================  ===================================================

Validation errors come back as 422 ``{"error": "...", "details": [...]}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from controller.emulator import apierrors
from controller.emulator.behaviour import Behaviour
from controller.emulator.routes import json_body
from controller.emulator.state import EmulatorState

Handler = Callable[[Request, EmulatorState], Awaitable[Response]]


def control(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        emulator: EmulatorState = request.app.state.emulator
        try:
            return await handler(request, emulator)
        except ValidationError as exc:
            details = exc.errors(include_url=False, include_context=False, include_input=False)
            return JSONResponse({"error": "invalid request", "details": details}, 422)
        except apierrors.ApiError as exc:
            return JSONResponse(exc.body, exc.status)

    return endpoint


def _object(request: Request) -> dict[str, Any]:
    body = json_body(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise apierrors.bad_request("body must be a JSON object")
    return body


async def reset(request: Request, emu: EmulatorState) -> Response:
    body = _object(request)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise apierrors.bad_request("seed must be an integer")
    behaviour = body.get("behaviour")
    emu.reset(
        seed=seed,
        behaviour=Behaviour.model_validate(behaviour) if behaviour is not None else None,
    )
    return JSONResponse({"ok": True, "seed": emu.seed})


async def get_behaviour(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse(emu.behaviour.model_dump())


async def patch_behaviour(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse(emu.patch_behaviour(_object(request)).model_dump())


async def seed(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse(emu.seed_fixtures(_object(request)), 201)


async def state(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse(emu.dump())


async def get_requests(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse(emu.requests())


async def clear_requests(request: Request, emu: EmulatorState) -> Response:
    emu.log.clear()
    return JSONResponse({"ok": True})


async def add_fault(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse(emu.add_fault(_object(request)).to_json(), 201)


async def list_faults(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse([rule.to_json() for rule in emu.faults.rules()])


async def clear_faults(request: Request, emu: EmulatorState) -> Response:
    emu.faults.clear()
    return JSONResponse({"ok": True})


async def delete_fault(request: Request, emu: EmulatorState) -> Response:
    if not emu.faults.remove(request.path_params["fault_id"]):
        raise apierrors.generic(404, "fault not found")
    return JSONResponse({"ok": True})


async def add_writer(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse(emu.external_writer(_object(request)), 201)


async def list_writers(request: Request, emu: EmulatorState) -> Response:
    return JSONResponse(emu.writers.to_json())


async def set_checks(request: Request, emu: EmulatorState) -> Response:
    body = _object(request)
    emu.set_checks(str(body.get("app")), str(body.get("machine_id")), str(body.get("checks")))
    return JSONResponse({"ok": True})


async def advance_clock(request: Request, emu: EmulatorState) -> Response:
    seconds = _object(request).get("seconds")
    advance = getattr(emu.clock, "advance", None)
    if advance is None:
        raise apierrors.bad_request("this emulator runs on a clock that cannot be advanced")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise apierrors.bad_request("seconds must be a non-negative number")
    advance(float(seconds))
    return JSONResponse({"monotonic": emu.clock.monotonic(), "now": emu.clock.now()})


def control_routes() -> list[Route]:
    table: list[tuple[str, Handler, list[str]]] = [
        ("/_emulator/reset", reset, ["POST"]),
        ("/_emulator/behaviour", get_behaviour, ["GET"]),
        ("/_emulator/behaviour", patch_behaviour, ["PATCH"]),
        ("/_emulator/seed", seed, ["POST"]),
        ("/_emulator/state", state, ["GET"]),
        ("/_emulator/requests", get_requests, ["GET"]),
        ("/_emulator/requests", clear_requests, ["DELETE"]),
        ("/_emulator/faults", add_fault, ["POST"]),
        ("/_emulator/faults", list_faults, ["GET"]),
        ("/_emulator/faults", clear_faults, ["DELETE"]),
        ("/_emulator/faults/{fault_id}", delete_fault, ["DELETE"]),
        ("/_emulator/external-writers", add_writer, ["POST"]),
        ("/_emulator/external-writers", list_writers, ["GET"]),
        ("/_emulator/checks", set_checks, ["POST"]),
        ("/_emulator/clock/advance", advance_clock, ["POST"]),
    ]
    return [
        Route(path, control(handler), methods=methods, name=f"control_{handler.__name__}")
        for path, handler, methods in table
    ]
