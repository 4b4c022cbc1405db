"""One redactor for everything the one-shot commands print and log.

:data:`REDACTOR` learns the API token when the client is built (:mod:`controller.cli.client`)
and every desired-state env value when the files are loaded (:mod:`controller.cli.desired`);
:func:`error` prints the one line a user mistake ends in, through it.  The daemon (``run``)
builds its own.
"""

from __future__ import annotations

import sys

from controller.observability.logging import Redactor

__all__ = ["REDACTOR", "error"]

#: Masks the token and every desired-state env value in whatever the one-shot commands log.
REDACTOR = Redactor()


def error(message: str) -> None:
    """``machine-reconciler: error: MESSAGE`` on stderr, redacted."""
    print(f"machine-reconciler: error: {REDACTOR.redact(message)}", file=sys.stderr)
