"""What every changing command (``apply``, ``adopt``, ``restart``) shares at its edge: the
``--yes`` rule and the flags that mean the same everywhere.

The rule: with ``--yes`` the change goes ahead; on a terminal a typed ``yes`` is required; off
a terminal (CI, cron, a pipe) without ``--yes`` the command refuses and says why, so nothing is
changed by a job that cannot be asked.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO

__all__ = [
    "DEFAULT_GRACE",
    "add_embedded_flag",
    "add_grace_flag",
    "add_lease_wait_flag",
    "add_output_flag",
    "confirmed",
]

DEFAULT_LEASE_WAIT = 60.0
DEFAULT_GRACE = 10.0


def confirmed(*, yes: bool, verb: str, question: str, ask_on: IO[str] | None = None) -> bool:
    """Whether to go ahead with the change (see the module docstring).

    ``verb`` names the command in the refusal ("refusing to adopt ..."); ``question`` is what
    the terminal is asked ("Adopt these machines?"), on stdout unless ``ask_on`` says where
    (``--output json`` keeps stdout for its document).
    """
    if yes:
        return True
    if not sys.stdin.isatty():
        print(
            f"machine-reconciler: error: refusing to {verb} without confirmation: pass --yes "
            "when not on a terminal",
            file=sys.stderr,
        )
        return False
    prompt = f"\n{question} Only 'yes' is accepted: "
    if ask_on is None:
        return input(prompt).strip() == "yes"
    ask_on.write(prompt)
    ask_on.flush()
    return input().strip() == "yes"


def add_lease_wait_flag(parser: argparse.ArgumentParser) -> None:
    """``--lease-wait SECONDS``: how long someone else's lease is waited for, never cleared."""
    parser.add_argument(
        "--lease-wait",
        type=float,
        default=DEFAULT_LEASE_WAIT,
        metavar="SECONDS",
        help=f"how long to wait for a lease someone else holds (default: {DEFAULT_LEASE_WAIT:g})",
    )


def add_embedded_flag(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--embedded``: run against the in-process emulator (a demonstration; no token)."""
    parser.add_argument("--embedded", action="store_true", help=what)


def add_grace_flag(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--grace SECONDS``: on the first Ctrl-C or SIGTERM, how long ``what`` in flight may
    finish before they are cancelled (leases are released either way)."""
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"on Ctrl-C, how long {what} in flight may finish (default: {DEFAULT_GRACE:g})",
    )


def add_output_flag(parser: argparse.ArgumentParser) -> None:
    """``--output text|json`` (:mod:`controller.cli.jsonout`)."""
    parser.add_argument(
        "--output",
        choices=["text", "json"],
        default="text",
        help="text (default) or json: one document on stdout, plan's schema plus results "
        "(controller/planning/plan-output.schema.json); the text goes to stderr",
    )
