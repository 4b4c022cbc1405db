"""Parse Fly's error bodies into :class:`controller.core.errors.ErrorEnvelope`; never raises.

Fly answers errors in two shapes (FLY_API.md 3.1): the generic ``{"error", "status",
"details"}`` and the lease-style ``{"status": "error", "message", "code"}``; some bodies are
plain text or an HTML page from a proxy.  This parser accepts any bytes at all: whatever it
cannot read as one of the two shapes still ends up in ``raw``.

An HTML page (a proxy's 502) is reduced to its readable text, title first, on one line: the
markup, styles and scripts would otherwise fill every error message and log line with noise.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any

from controller.core.errors import ErrorEnvelope

__all__ = ["parse_error_envelope"]

#: Bodies are cut to this many bytes before parsing, and ``raw`` to this many characters.
MAX_BODY_BYTES = 64 * 1024
MAX_RAW_CHARS = 4096
#: An HTML page is cut to this many characters of its readable text.
MAX_HTML_CHARS = 200

# The lease envelope's "status" is an outcome marker, not a machine-readable error code.
_STATUS_MARKERS = frozenset({"error", "success"})


def parse_error_envelope(body: bytes, content_type: str | None = None) -> ErrorEnvelope:
    """Read ``body`` as either Fly error shape, falling back to its raw text.

    ``content_type`` is advisory: JSON is attempted whenever the header says JSON or the body
    looks like JSON, because Fly's proxies do not always label it.
    """
    try:
        return _parse(body, content_type)
    except Exception:  # the contract is "never raises": keep whatever text we can
        return ErrorEnvelope(raw=_text(body))


def _parse(body: bytes, content_type: str | None) -> ErrorEnvelope:
    raw = _text(body)
    stripped = body[:MAX_BODY_BYTES].strip()
    if "html" in (content_type or "").lower() or stripped[:1] == b"<":
        return ErrorEnvelope(raw=html_text(raw))
    looks_json = stripped[:1] in (b"{", b"[", b'"')
    if not stripped or not (looks_json or "json" in (content_type or "").lower()):
        return ErrorEnvelope(raw=raw)
    try:
        decoded: Any = json.loads(stripped)
    except (ValueError, RecursionError):
        return ErrorEnvelope(raw=raw)
    if isinstance(decoded, str):
        return ErrorEnvelope(error=decoded, raw=raw)
    if not isinstance(decoded, dict):
        return ErrorEnvelope(raw=raw)
    status = _as_text(decoded.get("status"))
    if status is not None and status.strip().lower() in _STATUS_MARKERS:
        status = None
    return ErrorEnvelope(
        error=_as_text(decoded.get("error")),
        message=_as_text(decoded.get("message")),
        status=status,
        code=_as_text(decoded.get("code")),
        details=decoded.get("details"),
        raw=raw,
    )


def _text(body: bytes) -> str:
    return body[:MAX_BODY_BYTES].decode("utf-8", errors="replace")[:MAX_RAW_CHARS]


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)[:MAX_RAW_CHARS]
    except (ValueError, TypeError, RecursionError):
        return str(type(value).__name__)


class _Text(HTMLParser):
    """Collects a page's title and visible text (not scripts, styles or the rest of head)."""

    _HIDDEN = frozenset({"script", "style", "head", "noscript", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.text: list[str] = []
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._HIDDEN:
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._hidden:
            self.text.append(data)


def html_text(page: str) -> str:
    """An HTML page as one line: ``title: visible text`` (the title once), whitespace folded."""
    parser = _Text()
    try:
        parser.feed(page)
        parser.close()
    except Exception:  # malformed markup: fall back to the page with whitespace folded
        return " ".join(page.split())
    title = " ".join(" ".join(parser.title).split())
    text = " ".join(" ".join(parser.text).split())
    if title and text.startswith(title):
        line = text
    else:
        line = f"{title}: {text}" if title and text else title or text
    return line if len(line) <= MAX_HTML_CHARS else line[: MAX_HTML_CHARS - 3] + "..."
