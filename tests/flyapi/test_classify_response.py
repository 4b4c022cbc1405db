"""The status + envelope -> exception mapping, for every message family of FLY_API.md 3.2."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from controller.core import errors as e
from controller.flyapi.envelope import parse_error_envelope
from controller.flyapi.errors import classify_response, error_from_response, parse_lease_holder

MACHINE = "/v1/apps/acme/machines/3d8d413b29d089"
LEASE = MACHINE + "/lease"
WAIT = MACHINE + "/wait"


def env(body: object) -> e.ErrorEnvelope:
    """Parse a JSON-able body the way the client does."""
    return parse_error_envelope(json.dumps(body).encode(), "application/json")


def generic(error: str, status: str | None = None) -> e.ErrorEnvelope:
    """The generic {error, status} envelope."""
    body: dict[str, str] = {"error": error}
    if status is not None:
        body["status"] = status
    return env(body)


def lease_shape(message: str, code: str = "invalid") -> e.ErrorEnvelope:
    """The lease-style {status: error, message, code} envelope."""
    return env({"status": "error", "message": message, "code": code})


HELD_GO = (
    "machine ID 3d8d413b29d089 lease currently held by hello@fly.io, "
    "expires at 2022-10-20 19:59:06 +0000 UTC"
)
HELD_RFC = (
    "machine ID 2879325b42d318 lease currently held by "
    "9af60c27-0000-4000-8000-000000000000@tokens.fly.io, expires at 2026-05-14T10:41:08Z"
)

CASES: list[tuple[str, int, e.ErrorEnvelope, str, type[e.FlyAPIError]]] = [
    ("401 token", 401, generic("Authenticate: token validation error"), MACHINE, e.Unauthorized),
    ("401 empty", 401, parse_error_envelope(b"", None), MACHINE, e.Unauthorized),
    (
        "403 regional quota",
        403,
        generic(
            'organization "Kilo" is using 1970176 MB of memory in dfw which is over the allowed '
            "quota. please consider other regions"
        ),
        MACHINE,
        e.QuotaExceeded,
    ),
    ("403 permission", 403, generic("unauthorized: token lacks permission"), MACHINE, e.Forbidden),
    ("404 machine", 404, generic("machine not found"), MACHINE, e.NotFound),
    ("404 lease", 404, lease_shape("lease not found", "not_found"), LEASE, e.LeaseNotFound),
    (
        "408 wait",
        408,
        generic("machine failed to reach desired state, started, currently stopped"),
        WAIT,
        e.WaitTimeout,
    ),
    ("408 wait with query", 408, generic("timeout"), WAIT + "?state=started", e.WaitTimeout),
    (
        "408 elsewhere",
        408,
        generic("request timed out"),
        "/v1/apps/acme/machines",
        e.RequestTimeout408,
    ),
    ("409 lease held go time", 409, lease_shape(HELD_GO), LEASE, e.LeaseHeld),
    ("409 lease held rfc3339", 409, lease_shape(HELD_RFC), LEASE, e.LeaseHeld),
    ("409 lease held on update", 409, lease_shape(HELD_GO), MACHINE, e.LeaseHeld),
    (
        "409 insufficient memory",
        409,
        generic(
            "aborted: could not reserve resource for machine: insufficient memory available to "
            "fulfill request"
        ),
        MACHINE,
        e.InsufficientCapacity,
    ),
    (
        "409 insufficient cpus",
        409,
        generic("insufficient CPUs available to fulfill request on the current host"),
        MACHINE,
        e.InsufficientCapacity,
    ),
    (
        "409 insufficient resources",
        409,
        generic("insufficient resources available to fulfill request"),
        MACHINE,
        e.InsufficientCapacity,
    ),
    (
        "409 insufficient ips",
        409,
        generic("insufficient IPs available"),
        MACHINE,
        e.InsufficientCapacity,
    ),
    (
        "409 host disabled",
        409,
        generic("deploys to this host are temporarily disabled"),
        MACHINE,
        e.InsufficientCapacity,
    ),
    (
        "409 governor",
        409,
        generic("governor policy blocked start"),
        MACHINE + "/start",
        e.InsufficientCapacity,
    ),
    (
        "409 status insufficient_capacity",
        409,
        generic("something odd", "insufficient_capacity"),
        MACHINE,
        e.InsufficientCapacity,
    ),
    (
        "409 version",
        409,
        generic("current_version 01HQ73A7BFFDF1B6WMGHFZZ4E7 does not match"),
        MACHINE,
        e.VersionConflict,
    ),
    ("409 empty body", 409, parse_error_envelope(b"", None), MACHINE, e.VersionConflict),
    (
        "412 volume text",
        412,
        generic(
            "insufficient resources to create new machine with existing volume "
            "'vol_4y5gkog8p5kj839r'"
        ),
        "/v1/apps/acme/machines",
        e.VolumeInUse,
    ),
    (
        "412 volume status",
        412,
        generic("placement failed", "volume_placement_capacity"),
        "/v1/apps/acme/machines",
        e.VolumeInUse,
    ),
    (
        "412 volume in use",
        412,
        generic("volume is already in use by another machine"),
        MACHINE,
        e.VolumeInUse,
    ),
    (
        "412 min secrets version",
        412,
        generic("min_secrets_version 7 is not yet available"),
        MACHINE,
        e.PreconditionFailed,
    ),
    (
        "422 machine limit",
        422,
        generic("Your organization has reached its machine limit. Please contact billing@fly.io"),
        "/v1/apps/acme/machines",
        e.QuotaExceeded,
    ),
    (
        "422 payment method",
        422,
        generic(
            "failed to launch VM: To create more than 1 machine per app please add a payment "
            "method."
        ),
        "/v1/apps/acme/machines",
        e.QuotaExceeded,
    ),
    (
        "422 insufficient capacity",
        422,
        generic("we are out of room in ams", "insufficient_capacity"),
        "/v1/apps/acme/machines",
        e.InsufficientCapacity,
    ),
    (
        "422 name taken",
        422,
        generic("Name has already been taken", "name_taken"),
        "/v1/apps",
        e.NameTaken,
    ),
    (
        "422 name taken text only",
        422,
        generic("Name has already been taken"),
        "/v1/apps",
        e.NameTaken,
    ),
    ("422 validation", 422, generic("invalid guest: cpus must be > 0"), MACHINE, e.BadRequest),
    (
        "400 no capacity",
        400,
        generic("no capacity available in region ams"),
        "/v1/apps/acme/volumes",
        e.InsufficientCapacity,
    ),
    (
        "400 stop body",
        400,
        generic("json: cannot unmarshal array into Go value of type main.stopRequest"),
        MACHINE + "/stop",
        e.BadRequest,
    ),
    ("400 wait timeout arg", 400, generic("invalid_argument"), WAIT, e.BadRequest),
    (
        "400 volume not found",
        400,
        generic("volume not found"),
        "/v1/apps/acme/machines",
        e.BadRequest,
    ),
    ("429 no body", 429, parse_error_envelope(b"", None), MACHINE, e.RateLimited),
    ("500", 500, generic("internal error"), MACHINE, e.ServerError),
    (
        "502 html",
        502,
        parse_error_envelope(b"<html>Bad Gateway</html>", "text/html"),
        MACHINE,
        e.ServerError,
    ),
    ("503", 503, parse_error_envelope(b"unavailable", "text/plain"), MACHINE, e.ServerError),
    ("504", 504, parse_error_envelope(b"", None), MACHINE, e.GatewayTimeout),
    ("302", 302, parse_error_envelope(b"", None), MACHINE, e.UnexpectedStatus),
    ("405", 405, generic("method not allowed"), MACHINE, e.UnexpectedStatus),
]


@pytest.mark.parametrize(
    ("status", "envelope", "path", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_classify_response_maps_every_family(
    status: int, envelope: e.ErrorEnvelope, path: str, expected: type[e.FlyAPIError]
) -> None:
    """Each documented status/message family maps to exactly its exception class."""
    assert classify_response(status, envelope, path=path) is expected
    built = error_from_response(status=status, envelope=envelope, method="POST", path=path)
    assert type(built) is expected
    assert built.status == status


def test_lease_held_parses_go_time_and_holder() -> None:
    """The Go time.String() form yields holder and an aware UTC expiry."""
    exc = error_from_response(status=409, envelope=lease_shape(HELD_GO), method="POST", path=LEASE)
    assert isinstance(exc, e.LeaseHeld)
    assert exc.holder == "hello@fly.io"
    assert exc.expires_at == datetime(2022, 10, 20, 19, 59, 6, tzinfo=UTC)


def test_lease_held_parses_rfc3339_and_token_holder() -> None:
    """The RFC 3339 form and a token identity as holder are both understood."""
    exc = error_from_response(status=409, envelope=lease_shape(HELD_RFC), method="POST", path=LEASE)
    assert isinstance(exc, e.LeaseHeld)
    assert exc.holder == "9af60c27-0000-4000-8000-000000000000@tokens.fly.io"
    assert exc.expires_at == datetime(2026, 5, 14, 10, 41, 8, tzinfo=UTC)


def test_lease_held_in_generic_envelope_still_parsed() -> None:
    """A lease-held text under the generic "error" key is parsed the same way."""
    exc = error_from_response(status=409, envelope=generic(HELD_GO), method="POST", path=MACHINE)
    assert isinstance(exc, e.LeaseHeld)
    assert exc.holder == "hello@fly.io"


@pytest.mark.parametrize(
    ("text", "holder", "expires"),
    [
        (
            "lease currently held by a@b.c, expires at 2022-10-20 19:59:06.123456789 +0200 CEST",
            "a@b.c",
            datetime(2022, 10, 20, 17, 59, 6, 123456, tzinfo=UTC),
        ),
        (
            "lease currently held by a@b.c, expires at 2022-10-20 19:59:06 +0000 UTC m=+3.1",
            "a@b.c",
            datetime(2022, 10, 20, 19, 59, 6, tzinfo=UTC),
        ),
        (
            "lease currently held by x@y.z, expires at 2026-05-14T10:41:08.5+01:00",
            "x@y.z",
            datetime(2026, 5, 14, 9, 41, 8, 500000, tzinfo=UTC),
        ),
        ("lease currently held by x@y.z, expires at soon", "x@y.z", None),
        ("lease currently held by x@y.z", "x@y.z", None),
        ("lease is held", None, None),
        ("", None, None),
    ],
)
def test_parse_lease_holder_variants(
    text: str, holder: str | None, expires: datetime | None
) -> None:
    """Holder and expiry come out where present; anything unparsable is None, never an error."""
    assert parse_lease_holder(text) == (holder, expires)


def test_lease_conflict_without_holder_is_still_lease_held() -> None:
    """A 409 about a lease in another wording is a lease condition with unknown holder."""
    exc = error_from_response(
        status=409, envelope=lease_shape("lease nonce mismatch"), method="POST", path=MACHINE
    )
    assert isinstance(exc, e.LeaseHeld)
    assert exc.holder is None
    assert exc.expires_at is None


def test_error_from_response_keeps_request_id_and_retry_after() -> None:
    """Request id and retry-after hint ride along on the built exception."""
    exc = error_from_response(
        status=429,
        envelope=parse_error_envelope(b"", None),
        method="GET",
        path=MACHINE + "?version=x",
        request_id="01REQ",
        retry_after=3.0,
    )
    assert isinstance(exc, e.RateLimited)
    assert exc.request_id == "01REQ"
    assert exc.retry_after == 3.0
    assert exc.path == MACHINE
