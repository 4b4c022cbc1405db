"""Error envelope parsing (both Fly shapes and garbage) and response models."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from controller.core.errors import ErrorEnvelope
from controller.flyapi import Lease, Machine, WaitResult, parse_error_envelope, parse_retry_after


def test_generic_shape() -> None:
    """{error, status, details} is read field by field."""
    body = json.dumps(
        {"error": "no room", "status": "insufficient_capacity", "details": {"region": "ams"}}
    ).encode()
    envelope = parse_error_envelope(body, "application/json")
    assert envelope.error == "no room"
    assert envelope.status == "insufficient_capacity"
    assert envelope.details == {"region": "ams"}
    assert envelope.message is None
    assert envelope.text == "no room"
    assert envelope.raw == body.decode()


def test_lease_shape() -> None:
    """{status: error, message, code}: message is the text, "error" is not a status code."""
    body = b'{"status":"error","message":"lease currently held by a@b","code":"invalid"}'
    envelope = parse_error_envelope(body, "application/json")
    assert envelope.message == "lease currently held by a@b"
    assert envelope.code == "invalid"
    assert envelope.status is None
    assert envelope.text == "lease currently held by a@b"


@pytest.mark.parametrize(
    ("body", "content_type", "text"),
    [
        (b"", None, ""),
        (b"   ", "application/json", ""),
        (b"Bad Gateway", "text/plain", "Bad Gateway"),
        (b"<html><body>502</body></html>", "text/html", "502"),  # HTML: readable text
        (b'{"error": "unterminated', "application/json", '{"error": "unterminated'),
        (b'"just a string"', "application/json", "just a string"),
        (b"[1, 2, 3]", "application/json", "[1, 2, 3]"),
        (b"\xff\xfe\x00garbage", None, "\ufffd\ufffd\x00garbage"),
        (b"[" * 100_000, "application/json", "[" * 4096),
        (b'{"error": {"nested": true}}', None, '{"nested": true}'),
        (b'{"error": null, "message": 5}', None, "5"),
    ],
)
def test_garbage_and_odd_bodies_fall_back_to_raw_text(
    body: bytes, content_type: str | None, text: str
) -> None:
    """Non-JSON, broken JSON, deep nesting and odd types never raise and keep the text."""
    envelope = parse_error_envelope(body, content_type)
    assert isinstance(envelope, ErrorEnvelope)
    assert envelope.text == text.strip()


def test_json_without_content_type_is_still_parsed() -> None:
    """Proxies do not always label JSON; a body that looks like JSON is parsed anyway."""
    envelope = parse_error_envelope(b'{"error":"x","status":"name_taken"}', "text/plain")
    assert (envelope.error, envelope.status) == ("x", "name_taken")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("inf", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("tomorrow", None),
    ],
)
def test_retry_after_forms(value: str | None, expected: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP-date relative to the given now."""
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, now=now) == expected


def test_machine_version_falls_back_to_instance_id() -> None:
    """Older answers carry only instance_id; version is filled from it."""
    machine = Machine.model_validate({"id": "m1", "instance_id": "01V"})
    assert machine.version == "01V"
    both = Machine.model_validate({"id": "m1", "instance_id": "01OLD", "version": "01NEW"})
    assert both.version == "01NEW"


def test_machine_tolerates_nulls_and_unknown_fields() -> None:
    """Summary listings (null config/checks) and newer fields parse; extras are kept."""
    machine = Machine.model_validate(
        {"id": "m1", "config": None, "checks": None, "events": None, "cordoned": True}
    )
    assert machine.config == {}
    assert machine.checks == []
    assert machine.model_extra == {"cordoned": True}
    assert machine.metadata == {}


def test_machine_metadata_and_stripped_lease() -> None:
    """metadata comes from config.metadata; include_leases gives a lease without nonce."""
    machine = Machine.model_validate(
        {
            "id": "m1",
            "config": {"metadata": {"reconciler/slot": "web-ams-1"}},
            "lease": {"owner": "a@b", "expires_at": 1708569778, "description": "deploy"},
        }
    )
    assert machine.metadata == {"reconciler/slot": "web-ams-1"}
    assert machine.lease is not None
    assert machine.lease.nonce is None
    assert machine.lease.expires_at_datetime == datetime.fromtimestamp(1708569778, tz=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1708569778, 1708569778),
        (1708569778.9, 1708569778),
        ("1708569778", 1708569778),
        ("2024-02-22T02:42:58Z", 1708569778),
        (None, None),
    ],
)
def test_lease_expiry_forms(value: object, expected: int | None) -> None:
    """Lease expires_at is unix seconds, whatever form it arrives in."""
    assert Lease.model_validate({"expires_at": value}).expires_at == expected


def test_wait_result_old_and_new_shapes() -> None:
    """{ok: true} and WaitMachineResponse both parse."""
    assert WaitResult.model_validate({"ok": True}).ok is True
    new = WaitResult.model_validate(
        {"ok": True, "state": "started", "version": "v", "event_id": "e"}
    )
    assert (new.state, new.version, new.event_id) == ("started", "v", "e")


def test_models_are_frozen() -> None:
    """Parsed answers cannot be mutated by accident."""
    machine = Machine.model_validate({"id": "m1"})
    with pytest.raises(ValueError):
        machine.state = "stopped"  # type: ignore[misc]
