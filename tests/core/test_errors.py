"""The exception tree: shape, one-line rendering, no secrets, pickling."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import httpx
import pytest

from controller.core import errors as e


def all_api_errors() -> list[type[e.FlyAPIError]]:
    """Every FlyAPIError class defined in controller.core.errors."""
    return [
        cls for cls in vars(e).values() if isinstance(cls, type) and issubclass(cls, e.FlyAPIError)
    ]


def test_tree_is_independent_of_httpx() -> None:
    """No class of ours is an httpx error, so catching httpx never swallows ours (and v.v.)."""
    assert not issubclass(e.FlyAPIError, httpx.HTTPError)
    for cls in all_api_errors():
        assert not issubclass(cls, httpx.HTTPError)
        assert issubclass(cls, e.ControllerError)


def test_every_class_is_in_the_docstring_tree_and_has_a_unique_slug() -> None:
    """The ASCII tree lists every class, and error_class slugs are unique (metrics labels)."""
    doc = e.__doc__ or ""
    classes = all_api_errors()
    for cls in classes:
        assert cls.__name__ in doc, cls.__name__
    slugs = [cls.error_class for cls in classes]
    assert len(slugs) == len(set(slugs))
    assert "ConfigError" in doc
    assert "DesiredStateError" in doc


def test_str_is_one_informative_line() -> None:
    """str() names method, path, status, class, API message and request id on one line."""
    exc = e.VersionConflict(
        method="POST",
        path="/v1/apps/acme/machines/m1?secret=x",
        status=409,
        envelope=e.ErrorEnvelope(error="version\nmismatch", status="unknown"),
        request_id="01REQID",
    )
    text = str(exc)
    assert "\n" not in text
    assert text == (
        "POST /v1/apps/acme/machines/m1 -> 409 version_conflict: version mismatch "
        "[fly-request-id=01REQID]"
    )
    assert "secret" not in text
    assert "VersionConflict(" in repr(exc)


def test_str_without_response_uses_detail() -> None:
    """A transport failure says "no response" and why."""
    exc = e.ConnectFailed(method="GET", path="/v1/apps/a", detail="ConnectError: refused")
    assert str(exc) == "GET /v1/apps/a -> no response connect_failed: ConnectError: refused"


def test_machine_readable_status_is_shown() -> None:
    """The envelope's status code (e.g. insufficient_capacity) is appended."""
    exc = e.InsufficientCapacity(
        method="POST",
        path="/v1/apps/a/machines",
        status=422,
        envelope=e.ErrorEnvelope(error="no room", status="insufficient_capacity"),
    )
    assert str(exc).endswith("no room (status=insufficient_capacity)")


def test_long_messages_are_truncated() -> None:
    """A whole HTML page does not end up in a log line."""
    exc = e.ServerError(
        method="GET", path="/p", status=502, envelope=e.ErrorEnvelope(raw="x" * 5000)
    )
    assert len(exc.message) == e.MAX_MESSAGE_CHARS
    assert exc.message.endswith("...")


def test_envelope_text_prefers_message_then_error_then_raw() -> None:
    """The lease shape's message wins over error, which wins over the raw body."""
    assert e.ErrorEnvelope(message="m", error="e", raw="r").text == "m"
    assert e.ErrorEnvelope(error="e", raw="r").text == "e"
    assert e.ErrorEnvelope(message="  ", raw=" r ").text == "r"
    assert e.ErrorEnvelope().text == ""


def test_lease_held_and_lease_lost_keep_their_extras() -> None:
    """LeaseHeld carries holder/expiry; LeaseLost carries the new nonce but never prints it."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    held = e.LeaseHeld(holder="a@b", expires_at=when, method="POST", path="/l", status=409)
    assert (held.holder, held.expires_at, held.status) == ("a@b", when, 409)
    lost = e.LeaseLost(new_nonce="NONCE123", method="POST", path="/l", status=200, detail="lapsed")
    assert lost.new_nonce == "NONCE123"
    assert "NONCE123" not in str(lost)
    assert "NONCE123" not in repr(lost)


@pytest.mark.parametrize("cls", all_api_errors())
def test_every_error_pickles_round_trip(cls: type[e.FlyAPIError]) -> None:
    """Errors survive pickling (process pools, some log handlers)."""
    exc = cls(method="GET", path="/p", status=500, envelope=e.ErrorEnvelope(error="x"))
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is cls
    assert str(clone) == str(exc)
    assert clone.envelope == exc.envelope


def test_desired_state_error_summarises() -> None:
    """DesiredStateError names the file and the first few problems."""
    exc = e.DesiredStateError("apps/web.yaml", [f"problem {i}" for i in range(7)])
    assert str(exc).startswith("apps/web.yaml: problem 0; problem 1")
    assert str(exc).endswith("...")
    assert exc.errors[-1] == "problem 6"


def test_transport_subclasses_say_whether_the_request_left() -> None:
    """Only ConnectFailed is known not to have reached Fly."""
    assert e.ConnectFailed.request_sent is False
    assert e.RequestTimeout.request_sent is True
    assert e.ConnectionDropped.request_sent is True
