"""Ctrl-C and SIGTERM for the one-shot commands that change machines (``apply``, ``restart``,
``adopt``): the daemon's drain, reused.

* :func:`with_signals` receives SIGTERM for the whole command.  Before or after the changes
  (no lease held) a signal cancels the run at once; during them, it goes to the drain.
* :func:`drained` runs the changes.  The first SIGINT/SIGTERM lets no new machine operation
  start (the command's concurrency limiter is closed, ``total_tokens = 0``), lets the ones in
  flight finish within ``grace`` seconds, then cancels what is left.  A second signal cancels
  at once.  Leases are released either way: the leaser releases them in shielded ``finally``
  blocks (:mod:`controller.execution.leasing`), so cancelled work still lets go of them.
* :class:`Interrupt` counts the signals and gives the exit code: 128 + the first signal, 130
  for Ctrl-C and 143 for SIGTERM (the shell's codes).

SIGINT is only taken over while machines change: at the confirmation prompt (a blocking
``input()``) Python's ``KeyboardInterrupt`` must still work.

This module imports neither ``rich`` nor the executor, so a command that does not change
machines never pays for them at start-up.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio
import anyio.abc

from controller.cli.confirming import DEFAULT_GRACE
from controller.clock import Clock

__all__ = ["Interrupt", "announcement", "drained", "with_signals"]

EXIT_ERROR = 1
DRAIN_POLL = 0.05
"""Seconds between two looks at the operations still in flight during a drain."""


def announcement(grace: float) -> str:
    """What the first signal prints: what happens next, and how to stop at once."""
    return (
        f"interrupted: no new machine operation starts; waiting up to {grace:g}s for the "
        "ones in flight (Ctrl-C again to stop now; leases are released either way)"
    )


@dataclass
class Interrupt:
    """Signal handling for one command (see the module docstring).

    Every signal goes through :meth:`deliver`.  While machines are being changed,
    :func:`drained` installs ``during_execution`` (first signal: drain; second: cancel what is
    in flight) and receives SIGINT itself; :func:`with_signals` receives SIGTERM for the whole
    command and, outside execution (no lease held), cancels the run at once.
    """

    grace: float = DEFAULT_GRACE
    received: int = 0
    first: signal.Signals | None = None
    during_execution: Callable[[int], None] | None = None

    @property
    def interrupted(self) -> bool:
        return self.received > 0

    @property
    def exit_code(self) -> int:
        """128 + the first signal's number: 130 for Ctrl-C, 143 for SIGTERM (shell codes)."""
        return 128 + (self.first or signal.SIGINT)

    def deliver(self, signum: signal.Signals) -> bool:
        """Count ``signum``; True when execution took it (else the caller stops the run)."""
        self.received += 1
        if self.first is None:
            self.first = signum
        if self.during_execution is None:
            return False
        self.during_execution(self.received)
        return True


async def with_signals(run: Callable[[], Awaitable[int]], interrupt: Interrupt) -> int:
    """Run ``run`` receiving SIGTERM (systemd, Kubernetes, CI timeouts) for the whole command.

    During execution SIGTERM drains it like Ctrl-C (see :class:`Interrupt`); before or after,
    when no lease is held, it cancels the run at once.  The exit code is then 128 + the first
    signal: 143 for SIGTERM, 130 for Ctrl-C.
    """
    code = EXIT_ERROR
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                async for signum in signals:
                    if not interrupt.deliver(signum):
                        tg.cancel_scope.cancel()
                        return

        tg.start_soon(receive)
        code = await run()
        tg.cancel_scope.cancel()
    return interrupt.exit_code if interrupt.interrupted else code


async def drained(
    run_all: Callable[[], Awaitable[None]],
    interrupt: Interrupt,
    *,
    limiter: anyio.CapacityLimiter,
    clock: Clock,
    announce: Callable[[float], None],
) -> None:
    """``run_all`` with the drain on the first signal and the abort on the second.

    ``limiter`` is what every machine operation of ``run_all`` holds while it works (a lease
    waited for outside it is not "in flight"); ``announce(grace)`` says, on the first signal,
    what happens next.
    """
    async with anyio.create_task_group() as tg:
        work = anyio.CancelScope()

        async def drain() -> None:
            limiter.total_tokens = 0  # nothing new starts; waiting operations stay waiting
            deadline = clock.monotonic() + interrupt.grace
            while limiter.borrowed_tokens > 0 and clock.monotonic() < deadline:
                await clock.sleep(DRAIN_POLL)
            work.cancel()  # what never started (waiting on the limiter) is cancelled here

        def on_signal(count: int) -> None:
            if count == 1:
                announce(interrupt.grace)
                tg.start_soon(drain)
            else:
                work.cancel()

        async def ctrl_c(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGINT) as received:
                task_status.started()
                async for signum in received:
                    interrupt.deliver(signum)

        interrupt.during_execution = on_signal
        try:
            await tg.start(ctrl_c)
            with work:
                await run_all()
        finally:
            interrupt.during_execution = None
        tg.cancel_scope.cancel()  # done (or drained): stop a drain still polling
