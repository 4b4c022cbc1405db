"""The request pipeline (pure ASGI middleware) in front of the /v1 routes.

For every request: assign a ``fly-request-id`` (added to every response, control API included)
and buffer the body.  For /v1 requests, in order: record the request in the log; apply injected
latency and faults (see ``faults.py``); check auth (``Authorization: Bearer <token>``, or Fly's
``FlyV1 <token>`` scheme; 401 otherwise, FLY_API.md 3.2); apply rate limits (429, see
``ratelimit.py``); record what the emulator knows about the machine addressed (``audit.py``);
then route.  The control API (``/_emulator/...``) skips auth, faults, limits
and the log.

Dropped connections: the pipeline sends ``http.response.start`` and then raises
:class:`ConnectionDropped`.  A real server (uvicorn) then closes the socket mid-response, so a
client sees ``httpx.RemoteProtocolError``; the in-process ``EmulatorTransport`` maps the same
exception to the same httpx error.  Headers must go out first because uvicorn answers an
exception raised *before* the response started with a clean 500 instead of a broken connection.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.emulator import apierrors, audit
from controller.emulator.faults import FaultRule
from controller.emulator.ids import token_identity
from controller.emulator.state import EmulatorState

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_BODY_CHUNKS = 100_000
_AUTH = re.compile(r"^(?:Bearer|FlyV1)\s+(\S+)\s*$", re.IGNORECASE)
REQUEST_ID_HEADER = b"fly-request-id"
NONCE_HEADER = b"fly-machine-lease-nonce"


class ConnectionDropped(Exception):
    """Raised after the response started, so the server aborts the connection mid-response."""

    def __init__(self, when: str) -> None:
        super().__init__(f"emulator dropped the connection ({when} handling the request)")
        self.when = when


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for _ in range(MAX_BODY_CHUNKS):
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise apierrors.generic(413, "request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    else:
        raise apierrors.generic(413, "request body too large")
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class EmulatorPipeline:
    """Pure ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, emulator: EmulatorState) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        emu = self.emulator
        request_id = emu.rt.request_ids.request_id(emu.behaviour.default_region)
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), id_header]}
                status.append(int(message["status"]))
            await send(message)

        try:
            body = await _read_body(receive)
        except apierrors.ApiError as exc:
            await self._error(exc, scope, receive, send_with_id)
            return
        state = scope.setdefault("state", {})
        state["emulator.body"] = body
        state["emulator.request_id"] = request_id
        path: str = scope["path"]
        if path != "/v1" and not path.startswith("/v1/"):
            await self.app(scope, _replay(body, receive), send_with_id)
            return
        entry = emu.log.add(
            method=scope["method"],
            path=path,
            query_string=scope.get("query_string", b""),
            header_names=[k.decode("latin-1") for k, _ in scope.get("headers", [])],
            raw_body=body,
            request_id=request_id,
            at=emu.clock.monotonic(),
        )
        try:
            await self._api(scope, _replay(body, receive), send_with_id, entry)
        finally:
            entry["status"] = status[0] if status and entry["dropped"] is None else None

    async def _api(self, scope: Scope, receive: Receive, send: Send, entry: dict[str, Any]) -> None:
        emu = self.emulator
        fault = emu.faults.match(scope["method"], scope["path"])
        if fault is not None:
            entry["fault"] = fault.id
        latency = emu.behaviour.request_latency_seconds + (fault.spec.latency if fault else 0.0)
        if latency > 0:
            await emu.clock.sleep(latency)
        if fault is not None and fault.spec.drop == "before":
            await self._drop(send, entry, "before")
        if fault is not None and fault.spec.status is not None and not fault.spec.commit:
            await self._fault_response(fault, scope, receive, send)
            return
        try:
            self._gate(scope)
        except apierrors.ApiError as exc:
            await self._error(exc, scope, receive, send)
            return
        entry["audit"] = audit.describe(
            emu.store,
            scope["method"],
            scope["path"],
            _header(scope, NONCE_HEADER),
            entry["body"],
        )
        if fault is not None and (fault.spec.drop == "after" or fault.spec.commit):
            await self.app(scope, receive, _swallow)
            if fault.spec.drop == "after":
                await self._drop(send, entry, "after")
            await self._fault_response(fault, scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _gate(self, scope: Scope) -> None:
        """Auth, then rate limits; raises the API error to return."""
        emu = self.emulator
        match = _AUTH.match(_header(scope, b"authorization") or "")
        if match is None:
            raise apierrors.unauthorized()
        token = match.group(1)
        if emu.token is not None and token != emu.token:
            raise apierrors.unauthorized()
        scope["state"]["emulator.identity"] = token_identity(token)
        emu.limiter.check(scope["method"], scope["path"])

    @staticmethod
    async def _drop(send: Send, entry: dict[str, Any], when: str) -> None:
        entry["dropped"] = when
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise ConnectionDropped(when)

    @staticmethod
    async def _fault_response(fault: FaultRule, scope: Scope, receive: Receive, send: Send) -> None:
        status = fault.spec.status if fault.spec.status is not None else 500
        response = JSONResponse(fault.response_body(), status, headers=fault.spec.headers)
        await response(scope, receive, send)

    @staticmethod
    async def _error(exc: apierrors.ApiError, scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse(exc.body, exc.status, headers=exc.headers)(scope, receive, send)


async def _swallow(message: Message) -> None:
    """A ``send`` that discards the real response (for drop-after and commit faults)."""
