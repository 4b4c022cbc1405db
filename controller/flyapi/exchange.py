"""One API call end to end: pace, send, translate the outcome, retry when that is safe.

:class:`Exchange` is the only code that touches ``httpx`` request/response objects.  Per attempt
it waits on the :class:`~controller.flyapi.ratelimit.RateLimiter`, sends through the injected
``httpx.AsyncClient``, and either returns a 2xx response or raises exactly one
:class:`~controller.core.errors.FlyAPIError`: transport exceptions are wrapped here
(``raise ... from exc``), non-2xx responses go through
:func:`controller.flyapi.errors.error_from_response`.  Between attempts it asks
:func:`controller.core.retry.classify` and sleeps on the injected clock.

Secrets: the token is added to each request's headers here and nowhere else; no header or
request body is ever put into an exception, a log record or a :class:`ResponseEvent`, and the
token (plus any caller-named sensitive strings such as env values) is scrubbed from the API's
error text before the exception is built, in case the server echoes it.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any, Literal

import anyio
import httpx
from pydantic import SecretStr

from controller import __version__
from controller.clock import Clock
from controller.core import redaction
from controller.core.errors import (
    ConfigError,
    ConnectFailed,
    ConnectionDropped,
    ErrorEnvelope,
    FlyAPIError,
    RequestTimeout,
    ShuttingDown,
    TransportFailure,
)
from controller.core.retry import RetryAfter, RetryPolicy, classify
from controller.flyapi.envelope import parse_error_envelope
from controller.flyapi.errors import error_from_response
from controller.flyapi.inflight import CallLedger
from controller.flyapi.ratelimit import RateLimiter

__all__ = [
    "NONCE_HEADER",
    "Endpoint",
    "Exchange",
    "ResponseEvent",
    "parse_retry_after",
    "transport_error",
]

logger = logging.getLogger(__name__)

NONCE_HEADER = "fly-machine-lease-nonce"
REQUEST_ID_HEADER = "fly-request-id"
USER_AGENT = f"machine-reconciler/{__version__}"
#: Writes still sent once shutdown began: they only keep or give back leases of operations
#: already in flight.  Every other write re-checks after its pacing wait and is not sent.
_WHILE_STOPPING = frozenset({"leases.refresh", "leases.release"})
_NOT_SENT = "not sent: shutdown began while it waited"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A templated endpoint: ``name`` for metrics, ``bucket`` for Fly's per-action rate limit.

    ``kind`` picks the limit ("read": 5/s burst 10; "action": 1/s burst 3).  ``idempotent``
    says whether repeating an identical request after an ambiguous failure is harmless.
    """

    name: str
    method: str
    kind: Literal["read", "action"]
    idempotent: bool
    bucket: str = ""

    @property
    def rate_key(self) -> str:
        """The rate-limit bucket name (endpoints sharing one Fly action share it)."""
        return self.bucket or self.name


@dataclass(frozen=True, slots=True)
class ResponseEvent:
    """What the ``on_response`` hook receives after every attempt (metrics, logs).

    ``outcome`` is ``"ok"`` or the error's ``error_class``; ``status`` is ``None`` when no
    response arrived; ``duration`` is in seconds on the injected clock.
    """

    endpoint: str
    method: str
    status: int | None
    outcome: str
    duration: float
    request_id: str | None
    attempt: int


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (unix time): delta-seconds or an HTTP-date.

    Returns ``None`` when absent or unparsable; never negative.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def transport_error(exc: Exception, *, method: str, path: str) -> FlyAPIError:
    """Translate an ``httpx`` exception raised while sending into our tree (no response)."""
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    kwargs: dict[str, Any] = {"method": method, "path": path, "detail": detail}
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return ConnectFailed(**kwargs)
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeout(**kwargs)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return ConnectionDropped(**kwargs)
    return TransportFailure(**kwargs)


def redact_envelope(envelope: ErrorEnvelope, secrets: Iterable[str]) -> ErrorEnvelope:
    """Replace every sensitive string in the envelope's text fields (the shared rule of
    :mod:`controller.core.redaction`)."""
    found = redaction.needles(secrets)
    if not found or not any(n in envelope.raw for n in found):
        return envelope

    def scrub(text: str | None) -> str | None:
        return None if text is None else redaction.scrub(text, found)

    details = envelope.details
    if details is not None and any(n in repr(details) for n in found):
        details = redaction.REDACTED
    return replace(
        envelope,
        error=scrub(envelope.error),
        message=scrub(envelope.message),
        status=scrub(envelope.status),
        code=scrub(envelope.code),
        details=details,
        raw=scrub(envelope.raw) or "",
    )


Params = Sequence[tuple[str, str]]


class Exchange:
    """Sends requests for :class:`~controller.flyapi.client.MachinesClient` (see module doc)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token: SecretStr,
        clock: Clock,
        rng: random.Random,
        limiter: RateLimiter,
        policy: RetryPolicy,
        on_response: Callable[[ResponseEvent], None] | None,
    ) -> None:
        if not http.base_url.host:
            raise ConfigError("the httpx client needs a base_url such as https://api.machines.dev")
        self.http = http
        self._token = token
        self._clock = clock
        self._rng = rng
        self._limiter = limiter
        self._policy = policy
        self._on_response = on_response
        #: Set on shutdown: writes not yet sent are refused (see :data:`_WHILE_STOPPING`).
        self.stopping = False
        #: Calls between entry and return (pacing, attempts and retry sleeps included).
        self.calls_in_progress = 0
        #: Each call's attempt or retry sleep with its own deadline, the last answer and the
        #: first failure since (for the daemon's liveness: :mod:`controller.flyapi.inflight`).
        self.ledger = CallLedger(clock)
        self._call_ids = itertools.count()

    def deadline(self, http_timeout: float | None = None) -> float:
        """Total seconds one attempt may take, connect to last body byte.

        httpx's timeouts bound each connect, write and read separately, so a server that
        trickles a byte per second would never trip them; this bounds the whole response:
        the request's read timeout (``http_timeout`` or the client's) plus its connect timeout.
        """
        timeout = self.http.timeout
        read = http_timeout if http_timeout is not None else timeout.read
        if read is None:  # no read timeout configured: no deadline
            return math.inf
        return read + (timeout.connect or 0.0)

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy in force."""
        return self._policy

    async def call(
        self,
        endpoint: Endpoint,
        path: str,
        *,
        scope: str,
        params: Params = (),
        json: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        http_timeout: float | None = None,
        idempotent: bool | None = None,
        sensitive: Iterable[str] = (),
    ) -> httpx.Response:
        """Send with pacing and retries; return the 2xx response or raise one FlyAPIError.

        Retries happen only for ``exc.retryable`` errors that :func:`classify` answers with
        :class:`RetryAfter` (so non-idempotent calls repeat only when Fly provably did
        nothing: connect failures and 429), at most ``policy.max_attempts`` tries in all.
        """
        self.calls_in_progress += 1
        call = next(self._call_ids)
        try:
            return await self._call(
                call,
                endpoint,
                path,
                scope,
                params,
                json,
                headers,
                http_timeout,
                idempotent,
                sensitive,
            )
        finally:
            self.calls_in_progress -= 1
            self.ledger.idle(call)

    async def _call(
        self,
        call: int,
        endpoint: Endpoint,
        path: str,
        scope: str,
        params: Params,
        json: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        http_timeout: float | None,
        idempotent: bool | None,
        sensitive: Iterable[str],
    ) -> httpx.Response:
        idem = endpoint.idempotent if idempotent is None else idempotent
        secrets = (self._token.get_secret_value(), *sensitive)
        attempt = 0
        while True:
            attempt += 1
            await self._limiter.acquire((scope, endpoint.rate_key), endpoint.kind)
            if self.stopping and endpoint.method != "GET" and endpoint.name not in _WHILE_STOPPING:
                raise ShuttingDown(method=endpoint.method, path=path, detail=_NOT_SENT)
            try:
                return await self._attempt(
                    call, endpoint, path, attempt, params, json, headers, http_timeout, secrets
                )
            except FlyAPIError as exc:
                if not exc.retryable or attempt >= self._policy.max_attempts:
                    raise
                decision = classify(
                    exc,
                    attempt=attempt,
                    idempotent=idem,
                    now=self._clock.now(),
                    policy=self._policy,
                    rng=self._rng,
                )
                if not isinstance(decision, RetryAfter):
                    raise
                logger.debug(
                    "retrying %s in %.3fs after attempt %d: %s (status %s, fly-request-id %s)",
                    endpoint.name,
                    decision.seconds,
                    attempt,
                    exc.error_class,
                    exc.status,
                    exc.request_id,
                )
                self.ledger.sleep(call, decision.seconds)
                await self._clock.sleep(decision.seconds)
                self.ledger.idle(call)

    async def _attempt(
        self,
        call: int,
        endpoint: Endpoint,
        path: str,
        attempt: int,
        params: Params,
        json: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        http_timeout: float | None,
        secrets: Sequence[str],
    ) -> httpx.Response:
        method = endpoint.method
        all_headers = {
            "authorization": f"Bearer {self._token.get_secret_value()}",
            "user-agent": USER_AGENT,
            "accept": "application/json",
            **(headers or {}),
        }
        started = self._clock.monotonic()
        deadline = self.deadline(http_timeout)
        self.ledger.attempt(call, deadline)
        try:
            request = self.http.build_request(
                method,
                path,
                params=list(params),
                json=json,
                headers=all_headers,
                timeout=http_timeout if http_timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            with anyio.move_on_after(deadline) as scope:
                response = await self.http.send(request)  # reads the whole body
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ConfigError(f"cannot send {method} {path}: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            error = transport_error(exc, method=method, path=path)
            self._emit(call, endpoint, error.status, error.error_class, started, None, attempt)
            raise error from exc
        if scope.cancelled_caught:
            error = RequestTimeout(
                method=method,
                path=path,
                detail=f"no complete response within the {deadline:g} s request deadline",
            )
            self._emit(call, endpoint, None, error.error_class, started, None, attempt)
            raise error
        status = response.status_code
        request_id = response.headers.get(REQUEST_ID_HEADER)
        if 200 <= status <= 299:
            self._emit(call, endpoint, status, "ok", started, request_id, attempt)
            return response
        envelope = parse_error_envelope(response.content, response.headers.get("content-type"))
        error = error_from_response(
            status=status,
            envelope=redact_envelope(envelope, secrets),
            method=method,
            path=path,
            request_id=request_id,
            retry_after=parse_retry_after(
                response.headers.get("retry-after"), now=self._clock.now()
            ),
        )
        self._emit(call, endpoint, status, error.error_class, started, request_id, attempt)
        raise error

    def _emit(
        self,
        call: int,
        endpoint: Endpoint,
        status: int | None,
        outcome: str,
        started: float,
        request_id: str | None,
        attempt: int,
    ) -> None:
        """Book the attempt's outcome (an answer is a status below 500), then tell the hook."""
        if status is not None and status < 500:
            self.ledger.answered(call)
        else:
            self.ledger.failed(call)
        if self._on_response is None:
            return
        event = ResponseEvent(
            endpoint=endpoint.name,
            method=endpoint.method,
            status=status,
            outcome=outcome,
            duration=max(0.0, self._clock.monotonic() - started),
            request_id=request_id,
            attempt=attempt,
        )
        try:
            self._on_response(event)
        except Exception as hook_error:  # a broken metrics hook must not fail API calls
            logger.warning("on_response hook raised %s", type(hook_error).__name__)
