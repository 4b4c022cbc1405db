"""The shape ``adopt`` and ``restart`` share: one app's machines changed under leases, after a
confirmation, with text or ``--output json``, drained on Ctrl-C / SIGTERM like ``apply``.

:func:`run_one_app` checks the shared flags and runs a command's :class:`OneAppRun` under the
signal handlers (:func:`controller.cli.interrupting.with_signals`); :class:`OneAppRun` holds
what every such run needs: the parsed flags, the app, a client factory, the redactor, the
interrupt, and where the text goes (stderr under ``--output json``, whose stdout carries only
the document).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import IO, TypeVar

import anyio

from controller.cli.interrupting import Interrupt, with_signals
from controller.core.errors import ConfigError
from controller.flyapi import MachinesClient
from controller.model.desired import DesiredApp

__all__ = ["ClientFactory", "OneAppRun", "run_one_app"]

ClientFactory = Callable[[Sequence[DesiredApp]], AbstractAsyncContextManager[MachinesClient]]


class OneAppRun:
    """One run of a command on one app (see the module docstring); subclasses add ``run``."""

    def __init__(
        self,
        args: argparse.Namespace,
        desired: DesiredApp,
        *,
        client: ClientFactory,
        redact: Callable[[str], str],
        interrupt: Interrupt,
    ) -> None:
        self.args = args
        self.desired = desired
        self.client = client
        self.redact = redact
        self.interrupt = interrupt
        self.json = args.output == "json"
        # --output json keeps stdout for the document: the text goes to stderr.
        self.text: IO[str] = sys.stderr if self.json else sys.stdout

    def say(self, line: str) -> None:
        print(self.redact(line), file=self.text, flush=True)

    async def run(self) -> int:
        raise NotImplementedError


R = TypeVar("R", bound=OneAppRun)


def run_one_app(
    kind: type[R],
    args: argparse.Namespace,
    desired: DesiredApp,
    *,
    client: ClientFactory,
    redact: Callable[[str], str],
    check: Callable[[], None] = lambda: None,
) -> int:
    """Check ``--lease-wait`` and ``--grace`` (and ``check``, the command's own), then run a
    ``kind`` under the signal handlers; the exit code."""
    if args.lease_wait < 0:
        raise ConfigError("--lease-wait must be >= 0")
    if args.grace < 0:
        raise ConfigError("--grace must be >= 0")
    check()
    interrupt = Interrupt(grace=args.grace)
    one: OneAppRun = kind(args, desired, client=client, redact=redact, interrupt=interrupt)
    main: Callable[[], Awaitable[int]] = one.run
    return anyio.run(with_signals, main, interrupt)
