"""Serving the emulator over real HTTP: in a background thread for tests, or blocking for the CLI.

``serve_in_thread`` binds a loopback socket first (port 0 picks a free port, and the port is
known before uvicorn starts), runs uvicorn in a daemon thread with its own event loop, waits
(bounded) until it accepts connections, and shuts it down cleanly on exit.  ``run_server`` is
what ``machine-reconciler emulator --host --port --scenario --token`` calls.  Both silence the
traceback uvicorn logs for an *injected* dropped connection (it is the point, not a bug).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from controller.emulator.app import build_app
from controller.emulator.pipeline import ConnectionDropped
from controller.emulator.scenario import apply_scenario, load_scenario

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
STARTUP_TIMEOUT_SECONDS = 10.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class _IgnoreInjectedDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


@contextlib.contextmanager
def _quiet_drops() -> Iterator[None]:
    logger = logging.getLogger("uvicorn.error")
    log_filter = _IgnoreInjectedDrops()
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


def _config(app: ASGIApp, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


@contextlib.contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` on loopback in a background thread; yields ``http://127.0.0.1:NNNNN``."""
    if host not in LOOPBACK_HOSTS:
        raise ValueError(f"serve_in_thread only binds loopback addresses, not {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound_port = sock.getsockname()[1]
        server = uvicorn.Server(_config(app, "warning"))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="emulator-server", daemon=True
        )
        with _quiet_drops():
            thread.start()
            try:
                deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
                while not server.started:
                    if not thread.is_alive():
                        raise RuntimeError("the emulator server thread exited during start-up")
                    if time.monotonic() > deadline:
                        raise RuntimeError("the emulator server did not start in time")
                    time.sleep(0.01)
                url_host = f"[{host}]" if family == socket.AF_INET6 else host
                yield f"http://{url_host}:{bound_port}"
            finally:
                server.should_exit = True
                thread.join(SHUTDOWN_TIMEOUT_SECONDS)
    finally:
        sock.close()


def run_server(
    host: str, port: int, *, scenario: Path | None, token: str | None, seed: int
) -> None:
    """Run the emulator on ``host:port`` until interrupted (blocking; real clock).

    A scenario's own ``seed`` (if it has one) replaces ``seed``.
    """
    app = build_app(seed=seed, token=token)
    if scenario is not None:
        apply_scenario(app.state.emulator, load_scenario(scenario))
    with _quiet_drops():
        uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off", ws="none")
