"""The one redaction rule: which values are secret, how they are masked, and what replaces them.

Every output of the controller goes through this module: the API client scrubs error bodies
(:func:`scrub`), the log redactor masks records (:func:`needles`, :func:`scrub`), and the plan
hides field values (:func:`env_is_secret`, :data:`REDACTED`).  Before this module there were
three rules (6 characters and ``[redacted]`` in the client, 8 characters in the logs,
``(sensitive)`` in plans), so a 6-7 character secret was hidden in API errors but printed in logs.

**Which values are secret.**

* The API token and anything named explicitly (a webhook URL) -- always.
* An ``env`` value that came from a reference (``${ENV:NAME}``, ``${FILE:/path}``): the file
  points at a secret store, so the value is treated as a secret.
* An ``env`` key listed in the file's ``sensitive:`` list.
* An ``env`` key whose *name* looks like a secret (:func:`name_looks_secret`: TOKEN, SECRET,
  PASSWORD, KEY, ...), or whose *value* looks like one (a URL with a password in it).
* Inline file contents (``files[].raw_value``) -- always.

Everything else written literally in the file (``LOG_LEVEL: info``) is shown in plans: a
reviewer has to be able to review it, and it is already in the repository in plain text.

**How values are masked.**  Structured output (plans, JSON) masks by field: a secret field's
value is never kept, whatever its length.  Free text (log lines, API error messages, which can
echo a request body) is masked by searching for the secret strings themselves; there a value
shorter than :data:`MIN_SECRET_LEN` is not searched for, because replacing ``on`` or ``1``
everywhere would destroy every message while protecting nothing: a secret that short is
guessable anyway, and the structured outputs never print it.

**What replaces them**: :data:`REDACTED`, everywhere.

Pure: no I/O, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "MIN_SECRET_LEN",
    "REDACTED",
    "env_is_secret",
    "name_looks_secret",
    "needles",
    "scrub",
    "value_looks_secret",
]

REDACTED = "(sensitive)"
"""Stands in for a secret value in every output (plans, JSON, logs, error messages)."""

MIN_SECRET_LEN = 6
"""Secrets shorter than this are not searched for in free text (see the module docstring).
Fly tokens are far longer; a 6-character password is still masked."""

# Parts of a variable name that mark it as a secret.  Matched against the upper-cased name;
# ``KEY`` only as a whole word part (``API_KEY``, ``KEY_ID``, ``APIKEY``) so ``KEYBOARD_LAYOUT``
# and ``MONKEY`` are literal, the others anywhere in the name (``DB_PASSWORD``, ``GH_TOKEN``).
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSW|PASSPHRASE|PWD|PRIVATE|CREDENTIAL|AUTH|COOKIE|SESSION|SALT|DSN|"
    r"SIGNING|CERT|(?:^|_)KEY(?:$|_|S$)|[A-Z]KEY$"
)
# A URL carrying a password: ``postgres://user:hunter2@db``.
_SECRET_VALUE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@")


def name_looks_secret(name: str) -> bool:
    """Whether an env variable name looks like it holds a secret (``DB_PASSWORD``, ``API_KEY``)."""
    return _SECRET_NAME.search(name.upper()) is not None


def value_looks_secret(value: object) -> bool:
    """Whether a literal value looks like a secret (a URL with a password in it)."""
    return isinstance(value, str) and _SECRET_VALUE.search(value) is not None


def env_is_secret(name: str, value: object, *, referenced: bool, listed: bool) -> bool:
    """The rule for one ``env`` entry of a desired-state file (see the module docstring).

    ``referenced``: its value came from ``${ENV:..}`` / ``${FILE:..}``; ``listed``: the file's
    ``sensitive:`` list names it.
    """
    return referenced or listed or name_looks_secret(name) or value_looks_secret(value)


def needles(secrets: Iterable[str | None]) -> tuple[str, ...]:
    """The strings to search for in free text: long enough, distinct, longest first (so a
    secret containing another is replaced whole)."""
    found = {s for s in secrets if s and len(s) >= MIN_SECRET_LEN and s.strip()}
    return tuple(sorted(found, key=len, reverse=True))


def scrub(text: str, found: Iterable[str]) -> str:
    """``text`` with every needle (from :func:`needles`) replaced by :data:`REDACTED`."""
    for needle in found:
        if needle in text:
            text = text.replace(needle, REDACTED)
    return text
