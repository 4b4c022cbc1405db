"""What applying a plan produced: one frozen record per action, and their aggregate per app.

The executor (:mod:`controller.execution.executor`) turns every planned action into exactly one
:class:`MachineResult`; the reconciler (:mod:`controller.execution.reconciler`) wraps them, with
the plan, into an :class:`AppResult`.  The CLI maps an :class:`AppResult` to an exit code
(DESIGN.md 4, through :attr:`AppResult.severity`) and
the daemon requeues an app after the smallest ``retry_after`` hint.  :class:`Progress` records
are the intermediate steps shown by ``on_event`` callbacks (CLI progress, logs).

Records never hold configs, env values or tokens: ``message`` is one line built from the
action and the API's error text, which the client has already scrubbed of env values.

Outcomes (:class:`~controller.core.outcomes.Outcome`), with their severity, exit code, alert
and whether they count as blocked, are one table in :mod:`controller.core.outcomes`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from controller.core.outcomes import Outcome, Severity, worst
from controller.planning.plan import AppPlan

__all__ = [
    "ActionKind",
    "AppResult",
    "Event",
    "MachineResult",
    "Outcome",
    "Phase",
    "Progress",
    "Severity",
    "one_line",
]

ActionKind = Literal["create", "update", "destroy", "noop", "start", "stop", "restart"]
Phase = Literal[
    "lease_wait", "leased", "replanned", "writing", "adopted", "waiting", "checking", "destroying"
]

#: Longest ``message`` kept in a record.
MAX_MESSAGE = 300


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line, whitespace collapsed, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class MachineResult:
    """The end of one action.  ``machine_id`` is None for a create that never got a machine.

    ``attempts`` counts the writes tried (creates, updates, destroys; for ``lease_held`` the
    lease acquisitions).  ``error_class`` and ``request_id`` describe the last failure, if any
    (``request_id`` is Fly's ``fly-request-id``).  ``retry_after`` (seconds) hints when trying
    again makes sense: lease expiry, capacity cooldown, conflict requeue.  ``version`` is the
    machine version the action left in place (create/update ``ok``).
    """

    app: str
    machine_id: str | None
    slot: str | None
    group: str | None
    region: str
    action: ActionKind
    outcome: Outcome
    attempts: int = 0
    error_class: str | None = None
    request_id: str | None = None
    message: str = ""
    retry_after: float | None = None
    version: str | None = None
    fatal: bool = False
    """The error stops the whole run (auth: ``GiveUp.fatal`` of its classification)."""

    @property
    def done(self) -> bool:
        """The machine is in its desired state (``ok`` or ``noop``)."""
        return self.outcome.done

    def describe(self) -> str:
        """One line for logs and the CLI: ``update web-ams-0 (3d8d...) -> ok: message``."""
        who = self.slot or self.machine_id or "?"
        if self.machine_id and self.slot:
            who += f" ({self.machine_id})"
        tail = f": {self.message}" if self.message else ""
        return f"{self.action} {who} -> {self.outcome.value}{tail}"


@dataclass(frozen=True, slots=True)
class Progress:
    """An intermediate step of one action, for progress displays (never a final state)."""

    app: str
    machine_id: str | None
    slot: str | None
    group: str | None
    action: ActionKind
    phase: Phase
    message: str = ""
    quiet: float = 0.0
    """Seconds the action will now deliberately make no API call (a long-poll, a check
    interval, someone else's lease): the daemon's liveness counts that as progress."""


Event = MachineResult | Progress
"""What ``on_event`` callbacks receive."""


@dataclass(frozen=True, slots=True)
class AppResult:
    """One app's pass: the plan, one result per action, or the app-level failure.

    ``error_class``/``message``/``request_id`` are set when the pass failed before executing
    (listing the machines failed, for example); ``results`` is empty then.  ``relisted`` says
    the suspicious-list guard re-listed before planning (DESIGN.md 3).
    """

    app: str
    results: tuple[MachineResult, ...] = ()
    plan: AppPlan | None = None
    error_class: str | None = None
    message: str = ""
    request_id: str | None = None
    relisted: bool = False
    error_fatal: bool = False
    """The app-level error (``error_class``) stops the whole run (auth)."""
    error_retryable: bool = False
    """The app-level error is transient (a timeout, a dropped connection, a 5xx: the same
    request may succeed later): the API did not answer, rather than answered no.  The daemon
    then looks again every interval instead of backing off for minutes, so it notices the API
    is back."""

    @property
    def refused(self) -> bool:
        """The plan broke a safety budget and nothing was executed."""
        return self.plan is not None and self.plan.refused is not None

    @property
    def failed(self) -> bool:
        """The pass failed as a whole (before any action ran)."""
        return self.error_class is not None

    @property
    def converged(self) -> bool:
        """Every action ended ``ok`` or ``noop``, and nothing was refused or failed."""
        if self.failed or self.refused:
            return False
        return all(r.done for r in self.results)

    @property
    def drifted(self) -> bool:
        """A ``detect_only`` app differs from its desired state (reported, not corrected;
        ``converged`` only says that everything the pass was allowed to do succeeded)."""
        return self.plan is not None and bool(self.plan.drift)

    @property
    def partial(self) -> bool:
        """Some machines are blocked (capacity, quota, a volume, a halted rollout, a requeue,
        someone else's lease: the ``blocked`` column of the outcome table)."""
        return any(r.outcome.blocked for r in self.results)

    @property
    def lease_blocked(self) -> bool:
        """Some machine stayed leased by someone else past ``lease_wait``."""
        return any(r.outcome is Outcome.LEASE_HELD for r in self.results)

    @property
    def fatal(self) -> bool:
        """An auth failure: the whole run should stop (not ready, exit non-zero)."""
        return self.error_fatal or any(r.fatal for r in self.results)

    @property
    def severity(self) -> Severity:
        """How the pass ended, from the outcome table: failed (an app-level or fatal error, or
        a failed action) > refused (a refused plan, a held lease) > partial > converged."""
        if self.failed or self.fatal:
            return Severity.FAILED
        severity = worst(r.outcome for r in self.results)
        return max(severity, Severity.REFUSED) if self.refused else severity

    @property
    def retry_after(self) -> float | None:
        """The smallest ``retry_after`` hint among results that are not done, if any."""
        hints = [r.retry_after for r in self.results if not r.done and r.retry_after is not None]
        return min(hints) if hints else None

    def counts(self) -> dict[str, int]:
        """Results per outcome value (for summaries and metrics)."""
        return dict(Counter(r.outcome.value for r in self.results))

    def by_outcome(self, outcome: Outcome) -> tuple[MachineResult, ...]:
        """The results that ended with ``outcome``."""
        return tuple(r for r in self.results if r.outcome is outcome)
