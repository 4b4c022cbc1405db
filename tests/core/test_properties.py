"""Property tests: parsing and classification never raise, whatever Fly sends."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core import errors as e
from controller.core.retry import classify
from controller.flyapi.envelope import parse_error_envelope
from controller.flyapi.errors import classify_response, error_from_response, parse_lease_holder

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "error": json_values,
        "message": json_values,
        "status": json_values,
        "code": json_values,
        "details": json_values,
    },
)
bodies = (
    st.binary(max_size=2048)
    | json_values.map(lambda v: json.dumps(v).encode())
    | envelope_like.map(lambda v: json.dumps(v).encode())
)
content_types = st.none() | st.sampled_from(
    ["application/json", "text/plain", "text/html; charset=utf-8", "application/json; x=1", ""]
)


@settings(max_examples=300, deadline=None)
@given(body=bodies, content_type=content_types)
def test_envelope_parser_never_raises(body: bytes, content_type: str | None) -> None:
    """Any bytes parse to an envelope whose text fields are strings or None."""
    envelope = parse_error_envelope(body, content_type)
    assert isinstance(envelope.raw, str)
    for field in (envelope.error, envelope.message, envelope.status, envelope.code):
        assert field is None or isinstance(field, str)
    assert isinstance(envelope.text, str)


@settings(max_examples=300, deadline=None)
@given(
    status=st.integers(min_value=-10, max_value=1000),
    body=bodies,
    path=st.text(max_size=60),
    attempt=st.integers(min_value=-3, max_value=100),
    idempotent=st.booleans(),
    now=st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_classifier_never_raises(
    status: int, body: bytes, path: str, attempt: int, idempotent: bool, now: float | None
) -> None:
    """Every status + body maps to one FlyAPIError, and classify() decides on it."""
    envelope = parse_error_envelope(body, "application/json")
    cls = classify_response(status, envelope, path=path)
    assert issubclass(cls, e.FlyAPIError)
    exc = error_from_response(status=status, envelope=envelope, method="GET", path=path)
    assert type(exc) is cls
    assert "\n" not in str(exc)
    classify(exc, attempt=attempt, idempotent=idempotent, now=now)


@given(text=st.text(max_size=300))
def test_lease_holder_parser_never_raises(text: str) -> None:
    """Arbitrary text yields (holder or None, datetime or None)."""
    holder, _expires = parse_lease_holder("lease currently held by " + text)
    assert holder is None or isinstance(holder, str)
    parse_lease_holder(text)
