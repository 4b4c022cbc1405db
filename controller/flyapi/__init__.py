"""The Fly Machines API edge: typed async client, response models, envelope parsing, pacing.

Everything that speaks HTTP to Fly lives in this package; the rest of the controller sees only
the models below and the exception tree of :mod:`controller.core.errors`.

* :mod:`~controller.flyapi.client`: :class:`MachinesClient`, one method per endpoint.
* :mod:`~controller.flyapi.exchange`: one call end to end (pacing, sending, error mapping,
  retries); :class:`ResponseEvent` for the metrics hook.
* :mod:`~controller.flyapi.inflight`: the calls in flight with their own deadlines, the last
  answer and the first failure since (:class:`ApiCalls`), for the daemon's liveness.
* :mod:`~controller.flyapi.models`: pydantic models of responses.
* :mod:`~controller.flyapi.envelope`: :func:`parse_error_envelope` (never raises).
* :mod:`~controller.flyapi.ratelimit`: :class:`RateLimits`, :class:`RateLimiter`.
"""

from controller.flyapi.client import MachinesClient
from controller.flyapi.endpoints import ENDPOINTS
from controller.flyapi.envelope import parse_error_envelope
from controller.flyapi.exchange import NONCE_HEADER, Endpoint, ResponseEvent, parse_retry_after
from controller.flyapi.inflight import ApiCalls, Silence
from controller.flyapi.models import (
    ActionResult,
    App,
    CheckStatus,
    ImageRef,
    Lease,
    Machine,
    MachineEvent,
    MachinesPage,
    Organization,
    Volume,
    WaitResult,
)
from controller.flyapi.ratelimit import RateLimiter, RateLimits

__all__ = [
    "ENDPOINTS",
    "NONCE_HEADER",
    "ActionResult",
    "ApiCalls",
    "App",
    "CheckStatus",
    "Endpoint",
    "ImageRef",
    "Lease",
    "Machine",
    "MachineEvent",
    "MachinesClient",
    "MachinesPage",
    "Organization",
    "RateLimiter",
    "RateLimits",
    "ResponseEvent",
    "Silence",
    "Volume",
    "WaitResult",
    "parse_error_envelope",
    "parse_retry_after",
]
