"""The error-envelope parser's last-resort paths and the lease timestamp parsing edge cases.

These close the branch-coverage gaps of controller/flyapi/envelope.py and models.py that the
property tests and the client tests do not reach (the 95 % floor in `make test`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from controller.flyapi import envelope
from controller.flyapi.models import Lease


def test_envelope_parser_keeps_the_raw_text_even_if_parsing_itself_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """'Never raises' holds even against a bug in the parser: the raw text survives."""

    def broken(body: bytes, content_type: str | None) -> object:
        raise KeyError("a bug")

    monkeypatch.setattr(envelope, "_parse", broken)
    parsed = envelope.parse_error_envelope(b'{"error": "boom"}', "application/json")
    assert parsed.raw == '{"error": "boom"}'
    assert parsed.error is None


def test_a_value_json_cannot_write_back_is_named_by_its_type() -> None:
    """A field that cannot be serialised (here: a cycle) becomes its type name, not an error."""
    cyclic: list[object] = []
    cyclic.append(cyclic)
    assert envelope._as_text(cyclic) == "list"
    assert envelope._as_text({"a": [1, 2]}) == '{"a": [1, 2]}'


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2024-01-01T00:00:00", 1_704_067_200),  # no offset: read as UTC
        ("2024-01-01T00:00:00Z", 1_704_067_200),
        ("2024-01-01T01:00:00+01:00", 1_704_067_200),
        (" 1704067200 ", 1_704_067_200),
        (1_704_067_200.9, 1_704_067_200),
    ],
)
def test_lease_expiry_accepts_unix_seconds_and_rfc3339(value: object, seconds: int) -> None:
    lease = Lease.model_validate({"nonce": "n", "expires_at": value})
    assert lease.expires_at == seconds
    assert lease.expires_at_datetime == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("value", ["tomorrow", [1704067200], {"at": 1}])
def test_an_unreadable_lease_expiry_is_a_validation_error(value: object) -> None:
    with pytest.raises(ValidationError, match="expires_at"):
        Lease.model_validate({"expires_at": value})


def test_a_lease_without_expiry_has_no_expiry_datetime() -> None:
    lease = Lease.model_validate({"nonce": "n"})
    assert lease.expires_at is None
    assert lease.expires_at_datetime is None
