"""What the daemon makes of API responses, executor events and app results.

* :class:`Telemetry` is the ``on_response`` hook of the API client and the ``on_event`` hook
  of the executor: metrics (requests, durations, conflicts, actions, lease waits), one log
  event per machine action (``controller.actions``, with every field of
  :data:`~controller.observability.logging.ACTION_FIELDS`), whether the API accepted the
  token, and when the loop last showed work (for liveness; whether the API still answers is
  the client's bookkeeping, :mod:`controller.flyapi.inflight`).
* :func:`run_result`, :func:`observations`, :func:`drift_left` turn an app's
  :class:`~controller.execution.outcomes.AppResult` into the ``result`` label, alert observations
  and the ``drift_machines`` gauge.

Alert keys per outcome: capacity, volume, lease held (``lease_stuck``), bad request and
machine errors per slot; quota, auth, refused plans and failed listings per app; an unhealthy
machine per group (``rollout_halted``).
"""

from __future__ import annotations

import logging

from controller.clock import Clock
from controller.execution.outcomes import (
    AppResult,
    Event,
    Outcome,
    Progress,
    Severity,
    one_line,
)
from controller.flyapi import ResponseEvent
from controller.observability.alerts import AlertKey, Condition, Observation
from controller.observability.logging import action_extra
from controller.observability.metrics import Metrics

__all__ = ["Telemetry", "drift_left", "observations", "run_result"]

action_log = logging.getLogger("controller.actions")


class Telemetry:
    """API responses and executor events -> metrics, action logs, API verdicts, activity.

    Built before the client and the executor (``on_response`` / ``on_event`` hooks).
    """

    def __init__(self, metrics: Metrics, clock: Clock) -> None:
        self.metrics = metrics
        self._clock = clock
        self._seen = clock.monotonic()
        self._quiet: dict[tuple[str, str | None], float] = {}
        """Per action in flight: until when it announced it would make no call."""
        self.token_verified = False
        """Some API answer showed that the token works (any status but 401/403)."""
        self._lease_waits: dict[tuple[str, str | None], float] = {}

    @property
    def last_activity(self) -> float:
        """When the loop last showed work (monotonic seconds), for liveness.

        An API answer or an executor event is work.  So is a wait the executor announced
        (``Progress.quiet``: a long-poll, a check interval, someone else's lease): the loop
        counts as active until that wait is over, so a rollout waiting out a 15 s check
        interval is not a stall, while a call that hangs past its announced wait is.  An
        action's announcement ends with its next event (a long-poll that answers early).
        None of this counts once the API has stopped answering: :meth:`Daemon.liveness
        <controller.daemon.loop.Daemon.liveness>` then asks the client's call bookkeeping.
        """
        now = self._clock.monotonic()
        self._quiet = {key: until for key, until in self._quiet.items() if until > self._seen}
        if not self._quiet:
            return self._seen
        return max(self._seen, min(now, max(self._quiet.values())))

    @last_activity.setter
    def last_activity(self, when: float) -> None:
        self._seen = max(self._seen, when)

    def on_response(self, event: ResponseEvent) -> None:
        """The client's hook: one call per HTTP attempt.  Only an answer is activity."""
        if event.status is not None and event.status < 500:
            self.last_activity = self._clock.monotonic()
        self.metrics.api_request(event.endpoint, event.status, event.duration)
        if event.outcome == "version_conflict":
            self.metrics.conflict("version")
        elif event.outcome == "lease_held":
            self.metrics.conflict("lease")
        if event.status is not None and event.status not in (401, 403):
            self.token_verified = True

    def on_event(self, event: Event) -> None:
        """The executor's hook: progress steps and final results of machine actions."""
        now = self._clock.monotonic()
        self.last_activity = now
        key = (event.app, event.slot or event.machine_id)
        if isinstance(event, Progress):
            if event.quiet > 0:
                self._quiet[key] = now + event.quiet
            else:
                self._quiet.pop(key, None)
            if event.phase == "lease_wait":
                # The time spent waiting for the holder's lease (the announced pauses), not
                # the time spent queueing for a window slot before looking again.
                self._lease_waits[key] = self._lease_waits.get(key, 0.0) + event.quiet
            elif event.phase == "leased":
                self._lease_waited(key)
            return
        self._quiet.pop(key, None)
        self._lease_waited(key)
        self.metrics.action(event.app, event.action, event.outcome.value)
        if event.outcome is Outcome.NOOP:
            level = logging.DEBUG  # one per machine per pass: counted, not logged by default
        else:
            level = logging.INFO if event.done else logging.WARNING
        action_log.log(
            level,
            "%s: %s",
            event.app,
            event.describe(),
            extra=action_extra(
                app=event.app,
                machine=event.machine_id,
                slot=event.slot,
                action=event.action,
                outcome=event.outcome.value,
                attempt=event.attempts,
                error_class=event.error_class,
                request_id=event.request_id,
            ),
        )

    def _lease_waited(self, key: tuple[str, str | None]) -> None:
        waited = self._lease_waits.pop(key, None)
        if waited is not None:
            self.metrics.lease_waited(waited)


def run_result(result: AppResult) -> str:
    """One word for an app pass (the ``result`` label): failed, refused, lease_blocked,
    partial or converged: the pass's severity from the outcome table
    (:mod:`controller.core.outcomes`), the same one that picks ``apply``'s exit code."""
    severity = result.severity
    if severity is Severity.REFUSED and not result.refused:
        return "lease_blocked"
    return severity.run_result


def observations(result: AppResult) -> tuple[list[Observation], set[str]]:
    """The alert observations of one app pass, and the subjects it did not look at (a halted
    rollout skipped them: their conditions neither count nor resolve).  Which outcome raises
    which alert, keyed on what, is the outcome table's (:mod:`controller.core.outcomes`)."""
    app = result.app
    seen: list[Observation] = []
    if result.failed:
        failure = Condition.AUTH if result.fatal else Condition.API_ERROR
        seen.append(Observation(AlertKey(app, "-", failure), result.message, result.request_id))
        return seen, set()
    untouched: set[str] = set()
    for r in result.results:
        info = r.outcome.info
        subject = {"app": "-", "group": r.group or "-"}.get(
            info.subject, r.slot or r.machine_id or "-"
        )
        if r.fatal:
            condition: Condition | None = Condition.AUTH
            subject = "-"
        elif info.subject == "untouched":
            untouched.add(subject)
            continue
        else:
            condition = Condition(info.alert) if info.alert is not None else None
        if condition is not None and r.outcome is not Outcome.REFUSED:
            message = one_line(r.describe())
            seen.append(Observation(AlertKey(app, subject, condition), message, r.request_id))
    if result.refused and result.plan is not None and result.plan.refused is not None:
        reason = one_line(result.plan.refused.reason)
        seen.append(Observation(AlertKey(app, "-", Condition.REFUSED), reason))
    return seen, untouched


def drift_left(result: AppResult) -> int:
    """Machines still out of sync after the pass: changes not done, plus detect-only drift."""
    if result.plan is None:
        return 0
    undone = sum(1 for r in result.results if r.action != "noop" and not r.done)
    return undone + len(result.plan.drift)
