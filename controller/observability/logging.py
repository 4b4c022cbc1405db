"""Logging for the daemon: JSON lines or readable lines, and secrets masked in every record.

:func:`configure_logging` installs one handler on the root logger (called once, by the
composition root):

* **format**: ``json`` writes one JSON object per line (``time``, ``level``, ``logger``,
  ``message``, then every ``extra`` field, then ``exception``), for journald, Loki and
  Kubernetes; ``text`` writes ``time LEVEL logger: message key=value ...`` for people; ``auto``
  picks text on a terminal and JSON otherwise.
* **redaction**: a :class:`RedactionFilter` on the handler rewrites every record before it is
  formatted, and the formatter scrubs its output once more: the API token, every secret
  desired-state value (registered with :meth:`Redactor.update`; which values are secret, and
  the minimum length, is the one rule of :mod:`controller.core.redaction`), the alert webhook
  URL, ``Authorization`` header values and bearer / ``FlyV1`` tokens become
  :data:`~controller.core.redaction.REDACTED` wherever they appear: in
  the message, its arguments, ``extra`` fields (nested too), exception texts (including an
  exception whose text echoes a request body) and stack traces.

Action events (one per machine action) carry the fields in :data:`ACTION_FIELDS`; the daemon
logs them with :func:`action_extra`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TextIO

from controller.core import redaction

__all__ = [
    "ACTION_FIELDS",
    "REDACTED",
    "JsonFormatter",
    "RedactionFilter",
    "Redactor",
    "TextFormatter",
    "action_extra",
    "build_handler",
    "configure_logging",
]

REDACTED = redaction.REDACTED

#: The fields of every action event, in this order.
ACTION_FIELDS = (
    "app",
    "machine",
    "slot",
    "action",
    "outcome",
    "attempt",
    "error_class",
    "request_id",
)

_PATTERNS = (
    # Authorization: Bearer x / "authorization": "x" / authorization=x
    (
        re.compile(r"(?i)(\bauthorization\b[\"']?\s*[:=]\s*[\"']?)([^\"'\r\n,;}]+)"),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(bearer|flyv1)(\s+)[A-Za-z0-9._~+/=:,-]{6,}"), r"\1\2" + REDACTED),
    (re.compile(r"\bfm[12][ar]?_[A-Za-z0-9._~+/=-]{10,}"), REDACTED),  # Fly macaroon tokens
)

# The attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = frozenset(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def action_extra(
    *,
    app: str,
    machine: str | None,
    slot: str | None,
    action: str,
    outcome: str,
    attempt: int,
    error_class: str | None,
    request_id: str | None,
) -> dict[str, Any]:
    """The ``extra`` of an action event: every field of :data:`ACTION_FIELDS`, always."""
    return {
        "event": "action",
        "app": app,
        "machine": machine,
        "slot": slot,
        "action": action,
        "outcome": outcome,
        "attempt": attempt,
        "error_class": error_class,
        "request_id": request_id,
    }


class Redactor:
    """The set of secret strings to mask, and the masking itself (thread-safe to update)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fixed: frozenset[str] = frozenset()
        self._env: frozenset[str] = frozenset()
        self._needles: tuple[str, ...] = ()

    def add_secrets(self, *secrets: str | None) -> None:
        """Always mask these (the token, the webhook URL); they stay across :meth:`update`.

        Like every secret, masked in free text from :data:`~controller.core.redaction.
        MIN_SECRET_LEN` characters on (the one rule of :mod:`controller.core.redaction`)."""
        with self._lock:
            self._fixed = self._fixed | {s for s in secrets if s and s.strip()}
            self._rebuild()

    def update(self, env_values: Iterable[str]) -> None:
        """Replace the desired-state secret values to mask (after every load)."""
        with self._lock:
            self._env = frozenset(env_values)
            self._rebuild()

    def _rebuild(self) -> None:
        needles: set[str] = set()
        for secret in redaction.needles(self._fixed | self._env):
            # The secret as written, and as it appears inside JSON or a repr(), twice over
            # (a repr of an exception whose text holds a JSON request body).
            forms = {secret}
            for _ in range(2):
                forms |= {_json_escaped(f) for f in forms} | {_repr_escaped(f) for f in forms}
            needles |= forms
        self._needles = redaction.needles(needles)

    def redact(self, text: str) -> str:
        """``text`` with every secret and credential-looking value masked."""
        text = redaction.scrub(text, self._needles)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact_value(self, value: Any, _depth: int = 0) -> Any:
        """A copy of ``value`` with strings redacted, into dicts, lists and tuples."""
        if isinstance(value, str):
            return self.redact(value)
        if _depth > 8:
            return value
        if isinstance(value, Mapping):
            return {self.redact(str(k)): self.redact_value(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(v, _depth + 1) for v in value]
        return value


def _json_escaped(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _repr_escaped(text: str) -> str:
    return repr(text)[1:-1]


class RedactionFilter(logging.Filter):
    """Rewrites each record in place so nothing downstream sees a secret; never drops one."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        r = self.redactor
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg = r.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            # Render the traceback now, redacted; formatters reuse exc_text.
            record.exc_text = r.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = r.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = r.redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = r.redact_value(value)
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _timestamp(record: logging.LogRecord) -> str:
    when = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; scrubs its own output through ``redactor`` too."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            document.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = record.stack_info
        line = json.dumps(document, ensure_ascii=False, default=str, separators=(",", ":"))
        return self.redactor.redact(line) if self.redactor is not None else line


class TextFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z INFO logger: message key=value ...`` for terminals."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{k}={v}" for k, v in _extras(record).items() if v is not None and k != "event"
        )
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if fields:
            line += f"  {fields}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return self.redactor.redact(line) if self.redactor is not None else line


#: Libraries whose INFO lines are noise in a daemon's log (request lines, job runs).
_QUIET = ("httpx", "httpcore", "apscheduler", "uvicorn", "uvicorn.access", "uvicorn.error")


def build_handler(
    *,
    fmt: Literal["auto", "json", "text"] = "auto",
    redactor: Redactor,
    stream: TextIO | None = None,
) -> logging.Handler:
    """A handler writing to ``stream`` (default stderr) in ``fmt``, redacted."""
    out = stream if stream is not None else sys.stderr
    use_text = fmt == "text" or (fmt == "auto" and _is_tty(out))
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter(redactor) if use_text else JsonFormatter(redactor))
    handler.addFilter(RedactionFilter(redactor))
    return handler


def configure_logging(
    *,
    fmt: Literal["auto", "json", "text"] = "auto",
    level: str = "INFO",
    redactor: Redactor,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Make :func:`build_handler`'s handler the root logger's only one; returns it."""
    handler = build_handler(fmt=fmt, redactor=redactor, stream=stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
