"""HTTP status + Fly's error envelope -> exactly one exception class of the core tree.

This is the API edge's half of the error policy: :func:`classify_response` /
:func:`error_from_response` are the ONE mapping from a non-2xx response to an exception.  It reads
the HTTP code first, then the envelope's machine-readable ``status`` code, and only then message
text, and only to split codes Fly overloads (403 quota vs permission, 404 lease, 408 wait,
409 lease / capacity / version, 412 volume, 422 capacity / quota / name / validation,
400 capacity).  This is the one place that classifies ambiguous 409s by their message text
(FLY_API.md 3).  What to *do* about each class (retry, back off, requeue) stays in
:func:`controller.core.retry.classify`, which never looks at HTTP.

Pure: no I/O; :mod:`controller.flyapi.exchange` calls it with the parsed body.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from controller.core import errors as e

__all__ = ["classify_response", "error_from_response", "parse_fly_time", "parse_lease_holder"]


# ----------------------------------------------------------------- status + envelope -> class

_CAPACITY = re.compile(
    r"insufficient[ _]capacity|insufficient resources|could not reserve resource"
    r"|insufficient (?:memory|cpus?|ips?|gpus?)\b|no capacity|not enough capacity|at capacity"
    r"|governor policy blocked start|deploys to this host are temporarily disabled",
    re.IGNORECASE,
)
_QUOTA = re.compile(
    r"over the allowed quota|machine limit|add a payment method|quota exceeded",
    re.IGNORECASE,
)
# "machine ID ... lease currently held by <holder>, expires at <time>" is the documented text;
# any other 409 that talks about a lease (nonce missing or stale) is a lease condition too.
_LEASE = re.compile(r"\blease\b|currently held by", re.IGNORECASE)
_LEASE_NOT_FOUND = re.compile(r"lease not found", re.IGNORECASE)
_VOLUME = re.compile(r"\bvolume\b|\bvol_[0-9a-z]+", re.IGNORECASE)
_NAME_TAKEN = re.compile(r"has already been taken|name_taken", re.IGNORECASE)


def classify_response(
    status: int, envelope: e.ErrorEnvelope, *, path: str = ""
) -> type[e.FlyAPIError]:
    """Map a non-2xx ``status`` and its parsed ``envelope`` to exactly one exception class.

    ``path`` matters only for 408: a timeout from ``/wait`` is an answer (:class:`WaitTimeout`),
    from anywhere else it is ambiguous (:class:`RequestTimeout408`).  Never raises.
    """
    code = (envelope.status or "").strip().lower()
    text = f"{envelope.message or ''} {envelope.error or ''}"
    if not text.strip():
        text = envelope.raw[:2000]
    capacity = code == "insufficient_capacity" or bool(_CAPACITY.search(text))
    if status == 401:
        return e.Unauthorized
    if status == 403:
        return e.QuotaExceeded if _QUOTA.search(text) else e.Forbidden
    if status == 404:
        return e.LeaseNotFound if _LEASE_NOT_FOUND.search(text) else e.NotFound
    if status == 408:
        is_wait = path.split("?", 1)[0].rstrip("/").endswith("/wait")
        return e.WaitTimeout if is_wait else e.RequestTimeout408
    if status == 409:
        if code == "insufficient_capacity":
            return e.InsufficientCapacity
        if _LEASE.search(text):
            return e.LeaseHeld
        return e.InsufficientCapacity if capacity else e.VersionConflict
    if status == 412:
        if code == "volume_placement_capacity" or _VOLUME.search(text):
            return e.VolumeInUse
        return e.PreconditionFailed
    if status == 422:
        if code == "name_taken" or _NAME_TAKEN.search(text):
            return e.NameTaken
        if capacity:
            return e.InsufficientCapacity
        return e.QuotaExceeded if _QUOTA.search(text) else e.BadRequest
    if status == 400:
        return e.InsufficientCapacity if capacity else e.BadRequest
    if status == 429:
        return e.RateLimited
    if status == 504:
        return e.GatewayTimeout
    if 500 <= status <= 599:
        return e.ServerError
    return e.UnexpectedStatus


def error_from_response(
    *,
    status: int,
    envelope: e.ErrorEnvelope,
    method: str,
    path: str,
    request_id: str | None = None,
    retry_after: float | None = None,
) -> e.FlyAPIError:
    """Build the exception for a non-2xx response (see :func:`classify_response`)."""
    cls = classify_response(status, envelope, path=path)
    if cls is e.LeaseHeld:
        holder, expires_at = parse_lease_holder(envelope.text)
        return e.LeaseHeld(
            holder=holder,
            expires_at=expires_at,
            method=method,
            path=path,
            status=status,
            envelope=envelope,
            request_id=request_id,
            retry_after=retry_after,
        )
    return cls(
        method=method,
        path=path,
        status=status,
        envelope=envelope,
        request_id=request_id,
        retry_after=retry_after,
    )


# ----------------------------------------------------------------- lease holder messages

_HELD_BY = re.compile(
    r"held by\s+(?P<holder>[^,\s]+?)\s*(?:,|\s|$)(?:.*?expires at\s+(?P<ts>.+?))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
# Go's time.String(): "2022-10-20 19:59:06.123 +0000 UTC" (optionally " m=+1.5" appended).
_GO_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d+))?"
    r"\s*(?:(?P<offset>[+-]\d{2}:?\d{2})|Z|UTC)?",
    re.IGNORECASE,
)


def parse_lease_holder(text: str) -> tuple[str | None, datetime | None]:
    """Parse ``lease currently held by <holder>, expires at <time>``; ``None`` where unparsable.

    Handles Go's ``2022-10-20 19:59:06 +0000 UTC`` and RFC 3339 ``2026-05-14T10:41:08Z``.
    """
    match = _HELD_BY.search(text[:2000])
    if match is None:
        return None, None
    holder = match.group("holder").rstrip(".,;")
    stamp = match.group("ts")
    return (holder or None), (parse_fly_time(stamp) if stamp else None)


def parse_fly_time(stamp: str) -> datetime | None:
    """Parse the timestamp forms Fly prints; aware UTC ``datetime`` or ``None``.  Never raises."""
    match = _GO_TIME.match(stamp.strip())
    if match is None:
        return None
    frac = (match.group("frac") or "")[:6].ljust(6, "0")
    offset = match.group("offset")
    try:
        naive = datetime.strptime(
            f"{match.group('date')} {match.group('time')}", "%Y-%m-%d %H:%M:%S"
        )
        tz = UTC
        if offset:
            digits = offset.replace(":", "")
            minutes = int(digits[1:3]) * 60 + int(digits[3:5])
            tz = timezone(timedelta(minutes=minutes if digits[0] == "+" else -minutes))
        return naive.replace(microsecond=int(frac), tzinfo=tz).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
