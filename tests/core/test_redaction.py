"""The one redaction rule (controller.core.redaction), as the client and the logs use it."""

from __future__ import annotations

import io
import logging

import pytest

from controller.core import redaction
from controller.core.errors import ErrorEnvelope
from controller.flyapi.exchange import redact_envelope
from controller.observability.logging import Redactor, configure_logging

SEVEN = "hunt3r2"  # a 7-character secret: hidden in API errors but printed in logs before


def test_one_replacement_text_and_length_everywhere() -> None:
    """A 6-7 character secret is masked the same way in API errors and in logs."""
    envelope = ErrorEnvelope(raw=f"bad value {SEVEN}", error=f"bad {SEVEN}")
    scrubbed = redact_envelope(envelope, [SEVEN])
    assert SEVEN not in scrubbed.raw
    assert SEVEN not in (scrubbed.error or "")
    assert redaction.REDACTED in scrubbed.raw

    redactor = Redactor()
    redactor.update([SEVEN, "abc"])
    stream = io.StringIO()
    configure_logging(fmt="json", level="INFO", redactor=redactor, stream=stream)
    logging.getLogger("t").warning("value %s and abc", SEVEN)
    text = stream.getvalue()
    assert SEVEN not in text
    assert redaction.REDACTED in text
    assert "abc" in text, "values below MIN_SECRET_LEN are not searched for in free text"


@pytest.mark.parametrize(
    "name",
    [
        "API_TOKEN",
        "DB_PASSWORD",
        "SECRET_KEY_BASE",
        "AWS_SECRET_ACCESS_KEY",
        "APIKEY",
        "SENTRY_DSN",
    ],
)
def test_secret_looking_names(name: str) -> None:
    assert redaction.name_looks_secret(name)


@pytest.mark.parametrize("name", ["LOG_LEVEL", "PRIMARY_REGION", "FEATURE_FLAGS", "ROLE", "PORT"])
def test_plain_names(name: str) -> None:
    assert not redaction.name_looks_secret(name)


def test_the_env_rule() -> None:
    """Referenced, listed, secret-named or credential-looking values are secret; others not."""
    rule = redaction.env_is_secret
    assert not rule("LOG_LEVEL", "info", referenced=False, listed=False)
    assert rule("LOG_LEVEL", "info", referenced=True, listed=False)
    assert rule("LOG_LEVEL", "info", referenced=False, listed=True)
    assert rule("GITHUB_TOKEN", "x", referenced=False, listed=False)
    assert rule("DATABASE_URL", "postgres://u:pw@db/x", referenced=False, listed=False)
    assert not rule("DATABASE_URL", "postgres://db/x", referenced=False, listed=False)
