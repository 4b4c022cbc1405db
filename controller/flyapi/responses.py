"""Turn 2xx responses into models, or into :class:`~controller.core.errors.InvalidResponse`.

A validation failure is reported by field location and message only: pydantic's own error text
quotes the input, and the input is a machine config whose ``env`` values may be secrets, so the
``ValidationError`` is neither rendered nor chained.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from controller.core.errors import InvalidResponse
from controller.flyapi.models import Lease

__all__ = ["decode", "decode_json", "decode_lease", "decode_list", "invalid_response"]

_M = TypeVar("_M", bound=BaseModel)


def invalid_response(response: httpx.Response, endpoint: str, why: str) -> InvalidResponse:
    """An :class:`InvalidResponse` naming the request and Fly's request id, never the body."""
    return InvalidResponse(
        method=response.request.method,
        path=response.request.url.path,
        status=response.status_code,
        request_id=response.headers.get("fly-request-id"),
        detail=f"{endpoint}: {why}",
    )


def decode_json(response: httpx.Response, endpoint: str) -> Any:
    """The JSON body; an empty body reads as ``{}`` (several endpoints answer 200 with none)."""
    if not response.content.strip():
        return {}
    try:
        return response.json()
    except ValueError:
        raise invalid_response(response, endpoint, "the body is not JSON") from None


def validate(model: type[_M], data: Any, response: httpx.Response, endpoint: str) -> _M:
    """``model.model_validate(data)`` with secret-safe error reporting."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)[:5]
        )
        raise invalid_response(
            response, endpoint, f"not a valid {model.__name__}: {where}"
        ) from None


def decode(model: type[_M], response: httpx.Response, endpoint: str) -> _M:
    """The body as one ``model``; a non-object body (e.g. ``true``) reads as ``{}``."""
    data = decode_json(response, endpoint)
    return validate(model, data if isinstance(data, dict) else {}, response, endpoint)


def decode_list(model: type[_M], response: httpx.Response, endpoint: str) -> tuple[_M, ...]:
    """The body as a JSON array of ``model``."""
    data = decode_json(response, endpoint)
    if not isinstance(data, list):
        raise invalid_response(response, endpoint, "expected a JSON array")
    return tuple(validate(model, item, response, endpoint) for item in data)


def decode_lease(response: httpx.Response, endpoint: str) -> Lease:
    """A lease from the real wrapped ``{"status": "success", "data": {...}}`` or the spec's flat
    shape."""
    data = decode_json(response, endpoint)
    if not isinstance(data, dict):
        raise invalid_response(response, endpoint, "expected a JSON object")
    if data.get("status") == "error":
        raise invalid_response(response, endpoint, "a 2xx answer with an error envelope")
    inner = data.get("data")
    return validate(Lease, inner if isinstance(inner, dict) else data, response, endpoint)
