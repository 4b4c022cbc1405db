"""The daemon's HTTP endpoints: ``/healthz``, ``/readyz`` and ``/metrics`` (DESIGN.md 7).

* ``/healthz`` (liveness) answers 200 while the reconcile loop makes progress and the API
  answers: a complete pass finished within ``3 x interval`` (counted from start-up before the
  first one), or a pass is running and showed work within that time or has an API call on the
  wire within its own deadline (with ``--interval 5``, 15 s is shorter than one 60 s
  long-poll: a slow API must not flap the probe); and, once an attempt failed with no answer
  since, not for longer than the failed call's retry needs (a retry sleep plus one request
  deadline, at least ``3 x interval``).  The rule is ``Daemon.liveness``'s.  A running thread
  is not enough: a loop stuck past those bounds, or hung on a dead API, turns this 503 and
  the orchestrator restarts the process.
* ``/readyz`` (readiness) answers 200 once the desired state was loaded and the Machines API
  answered with a valid token (no 401/403 on the last pass of any app), else 503.
* ``/metrics``: the Prometheus text format of the daemon's own registry.

Both probes return a small JSON document saying why.  The checks are plain callables, so this
module knows nothing of the daemon; :func:`serve` runs the app with uvicorn inside the
caller's event loop without touching signal handlers (the daemon owns SIGTERM/SIGINT/SIGHUP).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Check", "bind_socket", "build_health_app", "serve"]


@dataclass(frozen=True, slots=True)
class Check:
    """A probe's verdict and the facts behind it."""

    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


def build_health_app(
    *,
    live: Callable[[], Check],
    ready: Callable[[], Check],
    metrics: Callable[[], bytes],
) -> Starlette:
    """The Starlette app of the three endpoints."""

    def probe(check: Callable[[], Check]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            verdict = check()
            body = {"status": "ok" if verdict.ok else "failing", **verdict.detail}
            return JSONResponse(
                body,
                status_code=200 if verdict.ok else 503,
                headers={"cache-control": "no-store"},
            )

        return endpoint

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", probe(live), methods=["GET", "HEAD"]),
            Route("/readyz", probe(ready), methods=["GET", "HEAD"]),
            Route("/metrics", metrics_endpoint, methods=["GET", "HEAD"]),
        ]
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one); raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the daemon decides what a signal means."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve ``app`` on the bound ``sock`` until cancelled; closes the socket at the end."""
    config = uvicorn.Config(
        app,
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    try:
        await server.serve(sockets=[sock])
    finally:
        server.should_exit = True
        for listener in server.servers:
            listener.close()
        sock.close()
