"""``build_app``: the Starlette application that serves the emulated Machines API.

Composes the /v1 routes (``routes.py``), the control API (``control.py``) and the request
pipeline (``pipeline.py``) around one :class:`EmulatorState`, reachable as
``app.state.emulator``.  The same app runs in-process (``EmulatorTransport``) and over loopback
HTTP (``serve_in_thread``, ``run_server``).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from controller.clock import Clock
from controller.emulator.behaviour import Behaviour
from controller.emulator.control import control_routes
from controller.emulator.pipeline import EmulatorPipeline
from controller.emulator.routes import api_routes
from controller.emulator.state import EmulatorState


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods answer in the generic JSON envelope.

    Starlette's headers are kept: a 405 must say which methods the path has (``Allow``, RFC 9110).
    """
    if not isinstance(exc, HTTPException):
        return JSONResponse({"error": "internal error"}, 500)
    return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)


def build_app(
    *,
    clock: Clock | None = None,
    seed: int = 0,
    behaviour: Behaviour | None = None,
    token: str | None = None,
) -> Starlette:
    """A fresh emulator app (clock default: ``SystemClock``; ``token`` None: any token works)."""
    emulator = EmulatorState(clock=clock, seed=seed, behaviour=behaviour, token=token)
    app = Starlette(
        routes=[*api_routes(), *control_routes()],
        middleware=[Middleware(EmulatorPipeline, emulator=emulator)],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.state.emulator = emulator
    return app
