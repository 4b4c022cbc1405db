"""Error bodies that are not Fly's JSON (issue 14): a proxy's HTML 502 page ends in one short
line (its title and readable text), never the page's markup."""

from __future__ import annotations

import pytest

from controller.core.errors import ServerError
from controller.flyapi.envelope import MAX_HTML_CHARS, html_text, parse_error_envelope
from tests.flyapi.conftest import MakeClient
from tests.flyapi.fakes import Script

PAGE = (
    b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title>\n"
    b"<style>body { font-family: sans-serif; }</style>\n<script>var x = 1;</script></head>\n"
    b"<body>\n<h1>502 Bad Gateway</h1>\n<p>The server returned an invalid response.</p>\n"
    + b"<p>padding &amp; more padding</p>\n" * 2000
    + b"</body></html>\n"
)


async def test_an_html_502_is_one_short_line(make_client: MakeClient) -> None:
    """The client's error for an HTML 502: one line, title first, no markup, bounded."""
    script = Script(default=(502, PAGE, {"content-type": "text/html"}))
    client = make_client(script)
    with pytest.raises(ServerError) as caught:
        await client.get_app("acme")
    text = str(caught.value)
    assert "\n" not in text
    assert "<" not in text
    assert "font-family" not in text
    assert "var x" not in text
    assert "-> 502 server_error: 502 Bad Gateway The server returned an invalid response." in text
    assert len(caught.value.message) <= MAX_HTML_CHARS


def test_html_without_content_type_is_recognised() -> None:
    """Proxies do not always label their pages: a body starting with ``<`` is treated as HTML."""
    envelope = parse_error_envelope(b"<html><body><p>upstream\n   down</p></body></html>")
    assert envelope.text == "upstream down"


def test_title_only_and_broken_markup() -> None:
    """A page with only a title, and unclosed markup, still give one readable line."""
    assert html_text("<html><head><title>503  Service\nUnavailable</title></head></html>") == (
        "503 Service Unavailable"
    )
    assert html_text("<p>half <b>open") == "half open"


def test_plain_text_bodies_stay_one_line() -> None:
    """A multi-line plain-text body is folded into one line of the error message."""
    envelope = parse_error_envelope(b"line one\nline two\n", "text/plain")
    assert "\n" in envelope.raw  # kept for classification ...
    exc = ServerError(method="GET", path="/v1/apps/a", status=500, envelope=envelope)
    assert str(exc) == "GET /v1/apps/a -> 500 server_error: line one line two"  # ... not shown
