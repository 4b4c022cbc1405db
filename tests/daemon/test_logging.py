"""Logs: JSON lines or readable lines, action events with every field, and no token, header
or env value anywhere, under every error path of a running daemon."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.daemon.loop import ReconcileFn
from controller.execution.executor import Executor
from controller.execution.outcomes import AppResult
from controller.execution.reconciler import reconcile_app
from controller.model.desired import DesiredApp
from controller.observability.logging import (
    ACTION_FIELDS,
    REDACTED,
    Redactor,
    build_handler,
    configure_logging,
)
from tests.daemon.support import IMAGE_V2, app_file, daemon_world
from tests.executor.support import TOKEN

SECRET_ENV = "pg-password-7f3a9c1e55"
QUOTED_ENV = 'quote"and\\backslash-secret'
ENV = {"DATABASE_PASSWORD": SECRET_ENV, "ODD": QUOTED_ENV, "LOG_LEVEL": "info"}


def redactor() -> Redactor:
    """A redactor knowing the token and the env values of ENV."""
    r = Redactor()
    r.add_secrets(TOKEN)
    r.update(ENV.values())
    return r


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything logged at DEBUG and above, as the daemon's JSON handler writes it."""
    stream = io.StringIO()
    handler = build_handler(fmt="json", redactor=redactor(), stream=stream)
    root = logging.getLogger()
    root.addHandler(handler)
    with caplog.at_level(logging.DEBUG):
        yield stream
    root.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """The JSON documents written so far (every line must parse)."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def assert_clean(text: str) -> None:
    """No secret, nor a recognisable piece of one, in any escaping."""
    for fragment in (TOKEN, "executor-test-token", SECRET_ENV, "7f3a9c1e55", "backslash-secret"):
        assert fragment not in text


# ------------------------------------------------------------------------------ units


def test_secrets_are_masked_in_message_args_extras_and_tracebacks(
    captured: io.StringIO,
) -> None:
    """Token, env values and Authorization values are masked wherever a record holds them."""
    log = logging.getLogger("test.redaction")
    body = json.dumps({"config": {"env": ENV}, "token": TOKEN})
    log.warning("sending %s with Authorization: Bearer %s", body, TOKEN)
    log.info("nested", extra={"request": {"headers": {"authorization": TOKEN}, "env": [ENV]}})
    try:
        raise RuntimeError(f"POST failed; request body was {body!r}")
    except RuntimeError:
        log.exception("the call failed")
    log.error("repr of a value: %r", QUOTED_ENV, stack_info=True)
    text = captured.getvalue()
    assert_clean(text)
    assert REDACTED in text
    assert "LOG_LEVEL" in text
    assert '"info"' in text or "info" in text, "short, harmless values stay readable"
    records = lines(captured)
    assert [r["level"] for r in records] == ["WARNING", "INFO", "ERROR", "ERROR"]
    assert "RuntimeError" in records[2]["exception"]


def test_authorization_bearer_and_fly_tokens_are_masked_without_knowing_them() -> None:
    """Credential-looking values are masked even when they were never registered."""
    r = Redactor()
    assert r.redact("Authorization: Bearer abcdef123456") == f"Authorization: {REDACTED}"
    assert r.redact('{"authorization": "FlyV1 fm2_abcdefghijklmnop"}') == (
        f'{{"authorization": "{REDACTED}"}}'
    )
    assert r.redact("token FlyV1 fm2_abcdefghijklmnopqrst,") == f"token FlyV1 {REDACTED}"
    assert r.redact("got fm2_lJPECAAAAAAAAMeq1 back") == f"got {REDACTED} back"
    assert r.redact("nothing to hide here") == "nothing to hide here"


def test_action_events_carry_every_field(captured: io.StringIO) -> None:
    """An action event carries all eight fields, null ones included."""
    from controller.daemon.telemetry import Telemetry
    from controller.execution.outcomes import MachineResult, Outcome
    from controller.observability.metrics import Metrics
    from controller.testing import FakeClock

    telemetry = Telemetry(Metrics(), FakeClock())
    telemetry.on_event(
        MachineResult(
            app="web",
            machine_id="3d8d9e1f2a3b4c",
            slot="web-ams-0",
            group="web",
            region="ams",
            action="update",
            outcome=Outcome.CAPACITY,
            attempts=2,
            error_class="insufficient_capacity",
            request_id="01HREQ-ams",
            message="no capacity",
        )
    )
    [event] = [r for r in lines(captured) if r.get("event") == "action"]
    assert {k: event[k] for k in ACTION_FIELDS} == {
        "app": "web",
        "machine": "3d8d9e1f2a3b4c",
        "slot": "web-ams-0",
        "action": "update",
        "outcome": "capacity",
        "attempt": 2,
        "error_class": "insufficient_capacity",
        "request_id": "01HREQ-ams",
    }
    assert event["level"] == "WARNING"


class FakeTTY(io.StringIO):
    """A stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


def test_auto_format_is_text_on_a_terminal_and_json_otherwise() -> None:
    """auto: readable lines on a TTY, JSON lines when piped (journald, Kubernetes)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        tty = FakeTTY()
        configure_logging(fmt="auto", redactor=redactor(), stream=tty)
        logging.getLogger("test.fmt").info("hello %s", TOKEN, extra={"app": "web"})
        assert tty.getvalue().split()[1:] == ["INFO", "test.fmt:", "hello", REDACTED, "app=web"]
        piped = io.StringIO()
        configure_logging(fmt="auto", redactor=redactor(), stream=piped)
        logging.getLogger("test.fmt").info("hello", extra={"app": "web"})
        [doc] = lines(piped)
        assert (doc["message"], doc["app"], doc["logger"]) == ("hello", "web", "test.fmt")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


# ------------------------------------------------------------------------------ error paths


def exploding(executor: Executor) -> ReconcileFn:
    """A reconcile whose first call raises an exception carrying a request body."""
    calls = 0

    async def reconcile(desired: DesiredApp, previous: int | None) -> AppResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            body = json.dumps({"config": {"env": ENV}, "headers": {"Authorization": TOKEN}})
            raise ValueError(f"unexpected answer to request {body}")
        return await reconcile_app(desired, executor=executor, previous_managed_count=previous)

    return reconcile


async def test_no_secret_in_logs_under_every_error_path(
    tmp_path: Path, captured: io.StringIO
) -> None:
    """Echoing API errors, drops, 401, bad files, exceptions: no secret in the log."""
    directory = tmp_path / "desired"
    directory.mkdir()
    (directory / "web.yaml").write_text(app_file("web", env=ENV))
    (directory / "bad.yaml").write_text(app_file("bad", env=ENV).replace("cpu_kind", "cpu_knd"))
    echo = {"error": f"bad token {TOKEN}; env {SECRET_ENV} {QUOTED_ENV}"}
    async with daemon_world(directory, interval=5, redactor=redactor(), reconcile=exploding) as w:
        await w.until(lambda: "web" in w.daemon.results)  # the unexpected exception
        faults: list[dict[str, Any]] = [
            {"method": "GET", "path": "/machines$", "status": 500, "body": echo, "count": 8},
            {"method": "POST", "path": "/machines$", "status": 422, "body": echo, "count": 1},
            {"method": "POST", "path": "/machines$", "drop": "before", "count": 1},
            {
                "method": "GET",
                "path": "/machines$",
                "status": 400,
                "body": echo,
                "headers": {"fly-request-id": f"req-{TOKEN}"},
                "count": 1,
            },
        ]
        for fault in faults:
            w.emulator.add_fault(fault)
        await w.until(lambda: w.daemon.results["web"].converged, within=300)
        w.emulator.add_fault(
            {"method": "POST", "path": "/machines/", "status": 422, "body": echo, "count": 2}
        )
        w.write("web.yaml", app_file("web", env=ENV, image=IMAGE_V2))
        await w.until(lambda: w.images("web") == [IMAGE_V2] * 2, within=300)
        w.emulator.add_fault({"path": "/machines", "status": 401, "body": echo, "count": 1})
        w.daemon.request_reload()
        await w.until(lambda: bool(w.daemon.auth_failed) or w.sink.kinds("auth") != [])
    text = captured.getvalue()
    assert_clean(text)
    records = lines(captured)
    assert any("unexpected answer to request" in r.get("exception", "") for r in records)
    assert any(r.get("event") == "load_error" for r in records)
    assert any(r.get("error_class") == "server_error" for r in records)
    assert any(r.get("error_class") == "bad_request" for r in records)
    assert any(r.get("event") == "action" and r["outcome"] == "ok" for r in records)
    assert REDACTED in text
