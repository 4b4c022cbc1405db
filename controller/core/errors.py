"""The controller's exception tree: every failure the rest of the code can see.

Pure data: this module imports no HTTP or async library.  The API client
(:mod:`controller.flyapi`) translates every transport exception and every non-2xx response into
exactly one class below, through the single mapping in
:func:`controller.flyapi.errors.error_from_response`;
:func:`controller.core.retry.classify` turns any of them into a retry decision.  Nothing from
``httpx`` ever escapes the client.

Hierarchy::

    ControllerError
    ├── ConfigError                      settings or command line are unusable (fatal)
    ├── DesiredStateError                a desired-state file is invalid (fatal for that app)
    └── FlyAPIError                      anything the Machines API call produced
        ├── TransportFailure             no HTTP response at all
        │   ├── ConnectFailed            never reached the server (connect error/timeout, pool full)
        │   ├── RequestTimeout           sent, but no answer in time (ambiguous)
        │   └── ConnectionDropped        sent, then reset / closed / garbled (ambiguous)
        ├── InvalidResponse              2xx whose body is not what the API promises
        ├── Unauthorized                 401
        ├── Forbidden                    403 that is not a quota
        ├── QuotaExceeded                403 "over the allowed quota"; 422 machine limit / payment
        ├── NotFound                     404
        │   └── LeaseNotFound            404 "lease not found"
        ├── WaitTimeout                  408 from /wait: the state was not reached yet
        ├── RequestTimeout408            408 anywhere else (ambiguous: may have happened)
        ├── Conflict                     409 (base for the two optimistic-concurrency outcomes)
        │   ├── LeaseHeld                409 "lease currently held by <holder>, expires at <time>"
        │   └── VersionConflict          409 that is neither a lease nor capacity
        ├── LeaseLost                    a lease refresh came back with a different nonce
        ├── InsufficientCapacity         409/422/400 capacity phrases, status insufficient_capacity
        ├── PreconditionFailed           412
        │   └── VolumeInUse              412 volume in use / volume host lacks capacity
        ├── BadRequest                   400, 422 validation
        │   └── NameTaken                422 status name_taken (app names are global)
        ├── RateLimited                  429
        ├── ShuttingDown                 not sent: the controller is stopping (no response)
        ├── ServerError                  5xx
        │   └── GatewayTimeout           504
        └── UnexpectedStatus             any other status (1xx/3xx/unlisted 4xx)

Every :class:`FlyAPIError` carries ``method``, ``path`` (no query string), ``status``, the parsed
:class:`ErrorEnvelope`, ``request_id`` (the ``fly-request-id`` header Fly support asks for) and a
``retry_after`` hint, plus two class-level facts: ``error_class`` (a stable slug for metrics and
alert dedupe keys) and ``retryable`` (the identical request may succeed if repeated later).

``str(exc)`` is one line: method, path, status, class, the API's message and the request id.  It
never contains request headers or request bodies (env values may be secrets), and the client
redacts the token from any API text before it gets here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "ConfigError",
    "Conflict",
    "ConnectFailed",
    "ConnectionDropped",
    "ControllerError",
    "DesiredStateError",
    "ErrorEnvelope",
    "FlyAPIError",
    "Forbidden",
    "GatewayTimeout",
    "InsufficientCapacity",
    "InvalidResponse",
    "LeaseHeld",
    "LeaseLost",
    "LeaseNotFound",
    "NameTaken",
    "NotFound",
    "PreconditionFailed",
    "QuotaExceeded",
    "RateLimited",
    "RequestTimeout",
    "RequestTimeout408",
    "ServerError",
    "ShuttingDown",
    "TransportFailure",
    "Unauthorized",
    "UnexpectedStatus",
    "VersionConflict",
    "VolumeInUse",
    "WaitTimeout",
]

#: Longest API message kept in ``str(exc)``; bodies can be whole HTML error pages.
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class ErrorEnvelope:
    """The parsed body of an error response.

    Fly uses two shapes (FLY_API.md 3.1): the generic ``{"error", "status", "details"}`` and the
    lease-style ``{"status": "error", "message", "code"}``.  ``status`` is the machine-readable
    status *code string* (``insufficient_capacity``, ``volume_placement_capacity``,
    ``name_taken``) when the body has one; the lease shape's ``"error"`` marker is dropped.
    ``raw`` is the body as text (lossy-decoded), always present, possibly empty.
    """

    error: str | None = None
    message: str | None = None
    status: str | None = None
    code: str | None = None
    details: Any = None
    raw: str = ""

    @property
    def text(self) -> str:
        """The best human-readable message: ``message``, else ``error``, else the raw body."""
        for candidate in (self.message, self.error, self.raw):
            if candidate and candidate.strip():
                return candidate.strip()
        return ""


class ControllerError(Exception):
    """Root of every error the controller raises on purpose."""


class ConfigError(ControllerError):
    """The settings or command line cannot be used; the process should exit non-zero."""


class DesiredStateError(ControllerError):
    """A desired-state file is invalid; that app is skipped, the others still reconcile."""

    def __init__(self, path: str, errors: list[str] | tuple[str, ...]) -> None:
        self.path = path
        self.errors = tuple(errors)
        summary = "; ".join(self.errors[:5]) + (" ..." if len(self.errors) > 5 else "")
        super().__init__(f"{path}: {summary}")


class FlyAPIError(ControllerError):
    """A Machines API call failed; see the module docstring for the subclasses.

    Construct with keywords only.  ``status`` is ``None`` when there was no HTTP response.
    """

    error_class: ClassVar[str] = "api_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        *,
        method: str,
        path: str,
        status: int | None = None,
        envelope: ErrorEnvelope | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> None:
        self.method = method
        self.path = path.split("?", 1)[0]
        self.status = status
        self.envelope = envelope if envelope is not None else ErrorEnvelope()
        self.request_id = request_id
        self.retry_after = retry_after
        self.detail = detail
        super().__init__(self._render())

    @property
    def message(self) -> str:
        """The API's message (or our own detail when there was no response), one line."""
        text = self.envelope.text or (self.detail or "")
        text = " ".join(text.split())
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - 3] + "..."
        return text

    def _render(self) -> str:
        status = "no response" if self.status is None else str(self.status)
        parts = [f"{_one_line(self.method)} {_one_line(self.path)} -> {status} {self.error_class}"]
        if self.message:
            parts.append(f": {self.message}")
        code = _one_line(self.envelope.status or "")[:60]
        if code and code not in ("error", "unknown"):
            parts.append(f" (status={code})")
        if self.request_id:
            parts.append(f" [fly-request-id={_one_line(self.request_id)[:100]}]")
        return "".join(parts)

    def __str__(self) -> str:
        return self._render()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(method={self.method!r}, path={self.path!r}, "
            f"status={self.status!r}, message={self.message!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default pickling of exceptions.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _rebuild(cls: type[FlyAPIError], state: dict[str, Any]) -> FlyAPIError:
    exc = cls.__new__(cls)
    exc.__dict__.update(state)
    Exception.__init__(exc, exc._render())
    return exc


# ----------------------------------------------------------------- no response


class TransportFailure(FlyAPIError):
    """No HTTP response arrived.  ``request_sent`` says whether Fly may have acted on it."""

    error_class = "transport"
    retryable = True
    request_sent: ClassVar[bool] = True


class ConnectFailed(TransportFailure):
    """The connection was never established, so the request provably never reached Fly."""

    error_class = "connect_failed"
    request_sent = False


class RequestTimeout(TransportFailure):
    """The request was sent but no response came in time; it may or may not have happened."""

    error_class = "timeout"


class ConnectionDropped(TransportFailure):
    """The connection was reset or closed mid-exchange; the request may have happened."""

    error_class = "connection_dropped"


class InvalidResponse(FlyAPIError):
    """A 2xx response whose body could not be parsed into the documented shape."""

    error_class = "invalid_response"


# ----------------------------------------------------------------- 4xx


class Unauthorized(FlyAPIError):
    """401: the token is missing, invalid or expired.  Fatal for the whole run."""

    error_class = "unauthorized"


class Forbidden(FlyAPIError):
    """403 without quota wording: the token lacks permission.  Fatal for the whole run."""

    error_class = "forbidden"


class QuotaExceeded(FlyAPIError):
    """An org quota or machine limit: 403 "over the allowed quota", 422 machine limit/payment."""

    error_class = "quota_exceeded"


class NotFound(FlyAPIError):
    """404: unknown app, machine or volume (also briefly right after a create)."""

    error_class = "not_found"


class LeaseNotFound(NotFound):
    """404 "lease not found": the lease expired or was released; harmless on release."""

    error_class = "lease_not_found"


class WaitTimeout(FlyAPIError):
    """408 from ``/wait``: the machine did not reach the state within the timeout.  Loop."""

    error_class = "wait_timeout"


class RequestTimeout408(FlyAPIError):
    """408 from any endpoint other than ``/wait``: a flyd timeout that may still have committed."""

    error_class = "server_timeout"
    retryable = True


class Conflict(FlyAPIError):
    """409 concerning concurrency (a lease or a version); capacity 409s are not Conflicts."""

    error_class = "conflict"


class LeaseHeld(Conflict):
    """409: someone else holds the machine's lease.  Requeue after ``expires_at``; never clear it.

    ``holder`` and ``expires_at`` are parsed from the message when it has the documented form
    (both ``2022-10-20 19:59:06 +0000 UTC`` and RFC 3339 times); otherwise ``None``.
    """

    error_class = "lease_held"

    def __init__(
        self,
        *,
        holder: str | None = None,
        expires_at: datetime | None = None,
        **kwargs: Any,
    ) -> None:
        self.holder = holder
        self.expires_at = expires_at
        super().__init__(**kwargs)


class VersionConflict(Conflict):
    """409: ``current_version`` no longer matches.  Re-read, re-plan, retry (bounded)."""

    error_class = "version_conflict"


class LeaseLost(FlyAPIError):
    """A refresh returned a different nonce: our lease had lapsed and a new one was made.

    Stop working on the machine.  ``new_nonce`` is the fresh lease's nonce so the caller can
    release it; it is deliberately left out of ``str()``.
    """

    error_class = "lease_lost"

    def __init__(self, *, new_nonce: str | None = None, **kwargs: Any) -> None:
        self.new_nonce = new_nonce
        super().__init__(**kwargs)


class InsufficientCapacity(FlyAPIError):
    """No room on the host or in the region (409/422/400).  Back off; maybe another region."""

    error_class = "insufficient_capacity"


class PreconditionFailed(FlyAPIError):
    """412 that is not about volumes (metadata ``machine_version``, ``min_secrets_version``)."""

    error_class = "precondition_failed"


class VolumeInUse(PreconditionFailed):
    """412 volume in use, or its host lacks capacity (``volume_placement_capacity``).  Alert."""

    error_class = "volume_in_use"


class BadRequest(FlyAPIError):
    """400, or 422 validation: permanent for this request; alert with the API's message."""

    error_class = "bad_request"


class NameTaken(BadRequest):
    """422 ``name_taken``: app names are global across all of Fly."""

    error_class = "name_taken"


class RateLimited(FlyAPIError):
    """429: nothing was done; retry after ``retry_after`` (when sent) or a backoff."""

    error_class = "rate_limited"
    retryable = True


class ShuttingDown(FlyAPIError):
    """A write the client refused to send because shutdown began while it waited (for the
    rate limiter or a retry).  Nothing was sent: the action was not attempted."""

    error_class = "shutting_down"


class ServerError(FlyAPIError):
    """5xx: Fly's side failed.  For non-idempotent calls the outcome is unknown."""

    error_class = "server_error"
    retryable = True


class GatewayTimeout(ServerError):
    """504: the edge gave up waiting; retries wait at least 10 s."""

    error_class = "gateway_timeout"


class UnexpectedStatus(FlyAPIError):
    """A status the API does not document for this client (1xx, 3xx, other 4xx)."""

    error_class = "unexpected_status"
