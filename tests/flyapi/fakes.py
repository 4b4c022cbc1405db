"""Canned Fly-like answers for client tests: a scripted ``httpx.MockTransport`` handler.

Deliberately tiny and hand-written; the client is never tested against ``controller.emulator``
in this folder, so a misreading of the API cannot be shared between the two.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx

TOKEN = "fo1_TEST-token-0123456789abcdef"
BASE = "https://api.machines.dev"

Answer = (
    tuple[int, Any] | tuple[int, Any, dict[str, str]] | Exception | Callable[[httpx.Request], Any]
)


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    """A response with a JSON body (bytes/str bodies are sent as they are)."""
    all_headers = {"fly-request-id": f"req-{status}", **(headers or {})}
    if isinstance(body, bytes):
        return httpx.Response(status, content=body, headers=all_headers)
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=all_headers)
    if body is None:
        return httpx.Response(status, headers=all_headers)
    return httpx.Response(status, json=body, headers=all_headers)


class Script:
    """A MockTransport handler answering from a script, in order, and recording requests.

    Each answer is ``(status, body[, headers])``, an exception to raise, or a callable taking
    the request.  When the script runs out, ``default`` answers (or the test fails).
    """

    def __init__(self, *answers: Answer, default: Answer | None = None) -> None:
        self.answers = list(answers)
        self.default = default
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.answers:
            answer = self.answers.pop(0)
        elif self.default is not None:
            answer = self.default
        else:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            answer = answer(request)
            if isinstance(answer, httpx.Response):
                return answer
        return reply(*answer)

    @property
    def last(self) -> httpx.Request:
        """The most recent request."""
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        """The JSON body of a recorded request (None when empty)."""
        content = self.requests[index].content
        return json.loads(content) if content else None


class UpperRandom(random.Random):
    """An rng whose jitter always picks the upper bound: exact, predictable schedules."""

    def uniform(self, a: float, b: float) -> float:
        return b


def machine_json(machine_id: str = "3d8d413b29d089", **overrides: Any) -> dict[str, Any]:
    """A Fly-like machine body."""
    body: dict[str, Any] = {
        "id": machine_id,
        "name": f"web-{machine_id[:4]}",
        "state": "started",
        "region": "ams",
        "instance_id": "01HQ73A7BFFDF1B6WMGHFZZ4E7",
        "private_ip": "fdaa:0:1::2",
        "config": {
            "image": "registry.fly.io/acme-web:v42",
            "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512},
            "metadata": {"reconciler/managed": "true"},
        },
        "image_ref": {"registry": "registry.fly.io", "repository": "acme-web", "tag": "v42"},
        "checks": [{"name": "http", "status": "passing", "output": "OK"}],
        "events": [{"id": "01EV", "type": "start", "status": "started", "timestamp": 1}],
        "host_status": "ok",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:01Z",
    }
    body.update(overrides)
    return body


def lease_json(nonce: str = "5c35f65c9f95", **overrides: Any) -> dict[str, Any]:
    """The wrapped lease envelope Fly really sends."""
    data = {
        "nonce": nonce,
        "expires_at": 1708569778,
        "owner": "hello@fly.io",
        "description": "",
        "version": "01HQ73A7BFFDF1B6WMGHFZZ4E7",
    }
    data.update(overrides)
    return {"status": "success", "data": data}
