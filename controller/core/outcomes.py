"""How one machine action can end, and what each ending means: one table (DESIGN.md 4, 6).

Every consumer reads it here instead of keeping its own set: ``apply``'s exit code
(:mod:`controller.cli.apply`), the daemon's run result and alerts
(:mod:`controller.daemon.telemetry`), the metrics' ``outcome`` label, and the result records
(:mod:`controller.execution.outcomes`).  Pure: no I/O, no imports above ``core``.

=============== ========= ==== ============== ======= ==========================================
outcome         severity  exit alert (subject) blocked meaning
=============== ========= ==== ============== ======= ==========================================
ok              converged 0    -               no      done and verified
noop            converged 0    -               no      nothing to do
lease_held      refused   4    lease_stuck     yes     another holder kept the lease past
                               (slot)                  ``lease_wait``
requeue         partial   3    -               yes     try again next pass (conflicts exhausted,
                                                       lease lost)
capacity        partial   3    capacity (slot) yes     insufficient capacity (region/host)
quota           partial   3    quota (app)     yes     org quota / machine limit
volume          partial   3    volume (slot)   yes     volume in use / placement (412)
bad_request     failed    1    bad_request     no      the API refused this spec (400/422)
                               (slot)
unhealthy       partial   3    rollout_halted  yes     not healthy on the new version: halts
                               (group)                 the group
rollout_halted  partial   3    - (untouched)   yes     not attempted: the group halted
gone            partial   3    -               yes     the machine disappeared; re-list next pass
error           failed    1    api_error       no      anything else after retries
                               (slot)
refused         refused   4    refused (app)   no      the plan broke a safety budget
list_           partial   3    api_error       yes     not created: Fly's machine list contradicted
inconsistent                   (app)                   itself (a staged create's machine was not
                                                       listed, or the confirming listing showed
                                                       the slot held; DESIGN.md 3)
=============== ========= ==== ============== ======= ==========================================

*blocked* means an outside condition (capacity, someone's lease, a halted rollout, a race, a
machine list that contradicts itself) kept the machine from its desired state: it is counted
as blocked, not failed.  A *fatal* error (auth: :class:`~controller.core.retry.GiveUp` with
``fatal``) fails the whole run whatever the outcome; it is a property of the error, recorded
on the result, not an outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Literal

__all__ = ["OUTCOMES", "Outcome", "OutcomeInfo", "Severity", "worst"]


class Severity(IntEnum):
    """How bad an ending is for the run; higher is worse (``apply``'s order 1 > 4 > 3 > 0)."""

    CONVERGED = 0
    PARTIAL = 1
    REFUSED = 2
    FAILED = 3

    @property
    def exit_code(self) -> int:
        """``apply``'s exit code for a run whose worst ending has this severity."""
        return _EXIT_CODES[self]

    @property
    def run_result(self) -> str:
        """The daemon's ``result`` label (``lease_blocked`` is a refused run with no refused
        plan; see :func:`controller.daemon.telemetry.run_result`)."""
        return self.name.lower()


_EXIT_CODES = {
    Severity.CONVERGED: 0,
    Severity.PARTIAL: 3,
    Severity.REFUSED: 4,
    Severity.FAILED: 1,
}

Subject = Literal["slot", "app", "group", "untouched"]


@dataclass(frozen=True, slots=True)
class OutcomeInfo:
    """One row of the table.  ``alert`` is an alert condition's value (``Condition`` lives in
    observability, above core), ``subject`` what the alert is keyed on."""

    severity: Severity
    alert: str | None = None
    subject: Subject = "slot"
    blocked: bool = False

    @property
    def done(self) -> bool:
        """The machine is where the desired state wants it."""
        return self.severity is Severity.CONVERGED

    @property
    def exit_code(self) -> int:
        return self.severity.exit_code


class Outcome(StrEnum):
    """How one action ended (see the module docstring); its row is :attr:`info`."""

    OK = "ok"
    NOOP = "noop"
    LEASE_HELD = "lease_held"
    REQUEUE = "requeue"
    CAPACITY = "capacity"
    QUOTA = "quota"
    VOLUME = "volume"
    BAD_REQUEST = "bad_request"
    UNHEALTHY = "unhealthy"
    ROLLOUT_HALTED = "rollout_halted"
    GONE = "gone"
    ERROR = "error"
    REFUSED = "refused"
    LIST_INCONSISTENT = "list_inconsistent"

    @property
    def info(self) -> OutcomeInfo:
        return OUTCOMES[self]

    @property
    def done(self) -> bool:
        return OUTCOMES[self].done

    @property
    def severity(self) -> Severity:
        return OUTCOMES[self].severity

    @property
    def blocked(self) -> bool:
        return OUTCOMES[self].blocked


_C, _P, _R, _F = Severity.CONVERGED, Severity.PARTIAL, Severity.REFUSED, Severity.FAILED

OUTCOMES: dict[Outcome, OutcomeInfo] = {
    Outcome.OK: OutcomeInfo(_C),
    Outcome.NOOP: OutcomeInfo(_C),
    Outcome.LEASE_HELD: OutcomeInfo(_R, "lease_stuck", "slot", blocked=True),
    Outcome.REQUEUE: OutcomeInfo(_P, blocked=True),
    Outcome.CAPACITY: OutcomeInfo(_P, "capacity", "slot", blocked=True),
    Outcome.QUOTA: OutcomeInfo(_P, "quota", "app", blocked=True),
    Outcome.VOLUME: OutcomeInfo(_P, "volume", "slot", blocked=True),
    Outcome.BAD_REQUEST: OutcomeInfo(_F, "bad_request", "slot"),
    Outcome.UNHEALTHY: OutcomeInfo(_P, "rollout_halted", "group", blocked=True),
    Outcome.ROLLOUT_HALTED: OutcomeInfo(_P, None, "untouched", blocked=True),
    Outcome.GONE: OutcomeInfo(_P, blocked=True),
    Outcome.ERROR: OutcomeInfo(_F, "api_error", "slot"),
    Outcome.REFUSED: OutcomeInfo(_R, "refused", "app"),
    Outcome.LIST_INCONSISTENT: OutcomeInfo(_P, "api_error", "app", blocked=True),
}
"""The table (see the module docstring).  Every :class:`Outcome` has a row."""


def worst(outcomes: Iterable[Outcome]) -> Severity:
    """The highest severity among ``outcomes`` (converged when there are none)."""
    return max((o.severity for o in outcomes), default=Severity.CONVERGED)
