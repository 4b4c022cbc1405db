"""``EmulatorTransport``: an httpx transport that runs the emulator app in-process.

It wraps ``httpx.ASGITransport`` and translates an injected dropped connection
(:class:`ConnectionDropped`, raised by the pipeline after the response started) into
``httpx.RemoteProtocolError``, the exception a real socket closed mid-response produces, so
clients exercise the same error handling in-process as over loopback HTTP.  Injected latency
needs nothing here: the pipeline sleeps on the emulator's clock, so with a ``FakeClock`` it takes
no wall time.
"""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp

from controller.emulator.pipeline import ConnectionDropped

DROPPED_MESSAGE = (
    "peer closed connection without sending complete message body (incomplete chunked read)"
)


class EmulatorTransport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=EmulatorTransport(app), base_url="http://emulator")``."""

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(DROPPED_MESSAGE, request=request) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()
