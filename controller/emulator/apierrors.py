"""The API error responses the emulator returns, in Fly's two envelopes (FLY_API.md 3.1).

Domain code raises :class:`ApiError`; the route layer turns it into a JSON response.  Keeping
every message here makes the exact texts (which clients match on substrings, FLY_API.md 3.2)
easy to review against the notes.  Where Fly's text is unknown the message is chosen and says so.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error with its JSON body, raised by the domain and rendered by the routes."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def generic(status: int, message: str, code: str | None = None) -> ApiError:
    """The generic envelope ``{"error": ..., "status"?: ...}``."""
    body: dict[str, Any] = {"error": message}
    if code is not None:
        body["status"] = code
    return ApiError(status, body)


def lease_envelope(status: int, message: str, code: str) -> ApiError:
    """The lease envelope ``{"status": "error", "message": ..., "code": ...}`` (DOCS-LEASE)."""
    return ApiError(status, {"status": "error", "message": message, "code": code})


def unauthorized() -> ApiError:
    """401 for a missing, malformed or wrong token (FLY_API.md 3.2)."""
    return generic(401, "Authenticate: token validation error")


def app_not_found(app: str) -> ApiError:
    return generic(404, f"app not found: {app}")


def machine_not_found(machine_id: str) -> ApiError:
    return generic(404, f"machine not found: {machine_id}")


def volume_not_found(volume_id: str) -> ApiError:
    return generic(404, f"volume not found: {volume_id}")


def bad_request(message: str) -> ApiError:
    return generic(400, message)


def lease_not_found() -> ApiError:
    """404 whose message contains "lease not found", which flyctl matches (FLY_API.md 1.7)."""
    return lease_envelope(404, "lease not found", "not_found")


def lease_held(machine_id: str, owner: str, expires: str) -> ApiError:
    """409 when someone else holds the lease or the nonce is wrong (DOCS-LEASE text)."""
    return lease_envelope(
        409,
        f"machine ID {machine_id} lease currently held by {owner}, expires at {expires}",
        "invalid",
    )


def version_mismatch(given: str, current: str) -> ApiError:
    """409 on a stale ``current_version`` (SPEC-NEW documents the 409; the text is chosen)."""
    return generic(
        409,
        f"machine version mismatch: current_version {given} does not match "
        f"the machine's current version {current}",
    )


def failed_precondition(message: str) -> ApiError:
    """412 for an operation the machine's state does not allow (text chosen, flyd-like)."""
    return generic(412, f"failed_precondition: {message}")


CAPACITY_CREATE = (
    "insufficient resources available to fulfill request: could not reserve resource for "
    "machine: insufficient memory available to fulfill request"
)
CAPACITY_UPDATE = (
    "aborted: could not reserve resource for machine: insufficient memory available to "
    "fulfill request"
)
MACHINE_LIMIT = "Your organization has reached its machine limit. Please contact billing@fly.io"


def insufficient_capacity() -> ApiError:
    """422 ``insufficient_capacity`` on create in a full region (FLY_API.md 3.2)."""
    return generic(422, CAPACITY_CREATE, "insufficient_capacity")


def capacity_on_update() -> ApiError:
    """409 when an update needs more memory than the host has (Kilo-Org/cloud #412)."""
    return generic(409, CAPACITY_UPDATE)


def machine_limit() -> ApiError:
    """422 when the org is at its machine count limit."""
    return generic(422, MACHINE_LIMIT)


def regional_quota(org: str, used_mb: int, region: str) -> ApiError:
    """403 for an org over its per-region memory quota (Kilo-Org/cloud #516 text)."""
    return generic(
        403,
        f'organization "{org}" is using {used_mb} MB of memory in {region} which is over the '
        "allowed quota. please consider other regions",
    )


def volume_in_use(volume_id: str) -> ApiError:
    """412 ``volume_placement_capacity`` (Kilo-Org/cloud #388 text, SPEC-NEW status)."""
    return generic(
        412,
        f"insufficient resources to create new machine with existing volume '{volume_id}'",
        "volume_placement_capacity",
    )


def rate_limited(retry_after: int | None) -> ApiError:
    """429; the body text is unconfirmed (FLY_API.md 5)."""
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    return ApiError(429, {"error": "rate limit exceeded"}, headers)
