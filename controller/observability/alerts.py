"""Alerts: conditions that fire after consecutive failures, resolve with a notice, and reach
their sinks without ever blocking the reconcile loop (DESIGN.md 8).

* An **observation** is one pass seeing one condition, under a dedupe key
  :class:`AlertKey` ``(app, machine or group, condition)``: never the message, so a changing
  error text does not make a new alert.  :meth:`Alerts.observe` records a pass: keys seen count
  up, and once a key was seen on ``threshold`` consecutive passes (default 3; **auth** and
  **bad desired state** at once) it **fires**; keys of the same scope that the pass did not
  see **resolve**, with a notice if they had fired.
* **Sinks** receive :class:`Notice` records (``firing``, ``reminder``, ``resolved``):
  :class:`LogSink` (the log), :class:`GaugeSink` (the ``alerts_firing{app,condition}`` gauge) and
  :class:`WebhookSink` (a JSON POST with a Slack-compatible ``text`` field).  A firing alert
  is re-notified every ``renotify_interval`` (:meth:`Alerts.remind`, driven by
  :meth:`Alerts.run`).
* The webhook never blocks the loop: notices go into a bounded in-memory queue (the newest is
  dropped, with a warning, when it is full) and a sender task posts them with a timeout and a
  few retries.  The URL may hold a secret (Slack's do) and is never logged.

The daemon maps executor results to observations; this module knows nothing of them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

import anyio
import httpx
from pydantic import SecretStr

from controller.clock import Clock

__all__ = [
    "IMMEDIATE",
    "Alert",
    "AlertKey",
    "AlertSink",
    "Alerts",
    "Condition",
    "GaugeSink",
    "LogSink",
    "Notice",
    "Observation",
    "WebhookSink",
]

logger = logging.getLogger("controller.alerts")


class Condition(StrEnum):
    """What went wrong (the third part of the dedupe key)."""

    CAPACITY = "capacity"
    QUOTA = "quota"
    VOLUME = "volume"
    LEASE_STUCK = "lease_stuck"
    AUTH = "auth"
    ROLLOUT_HALTED = "rollout_halted"
    BAD_DESIRED_STATE = "bad_desired_state"
    BAD_REQUEST = "bad_request"
    REFUSED = "refused"
    API_ERROR = "api_error"


#: Conditions that fire on the first observation.
IMMEDIATE = frozenset({Condition.AUTH, Condition.BAD_DESIRED_STATE})


@dataclass(frozen=True, slots=True, order=True)
class AlertKey:
    """The dedupe key: app (or file), machine slot or group (``-`` for the app), condition."""

    app: str
    subject: str
    condition: Condition

    def __str__(self) -> str:
        where = self.app if self.subject == "-" else f"{self.app}/{self.subject}"
        return f"{self.condition.value} {where}"


@dataclass(frozen=True, slots=True)
class Observation:
    """One pass saw ``key``; ``message`` says what it saw (latest wins, never part of the key)."""

    key: AlertKey
    message: str
    request_id: str | None = None


@dataclass(slots=True)
class Alert:
    """A key that was seen on ``count`` consecutive passes; firing once ``fired_at`` is set."""

    key: AlertKey
    message: str
    count: int
    first_seen: float
    request_id: str | None = None
    fired_at: float | None = None
    notified_at: float | None = None
    """Monotonic time of the last firing or reminder notice."""

    @property
    def firing(self) -> bool:
        """Whether the alert fired (and has not resolved)."""
        return self.fired_at is not None


NoticeKind = Literal["firing", "reminder", "resolved"]


@dataclass(frozen=True, slots=True)
class Notice:
    """What a sink receives."""

    kind: NoticeKind
    key: AlertKey
    message: str
    count: int
    since: float
    """Unix time the condition was first seen."""
    request_id: str | None = None

    @property
    def text(self) -> str:
        """One line for people (and Slack)."""
        label = {"firing": "FIRING", "reminder": "STILL FIRING", "resolved": "RESOLVED"}
        icon = {
            "firing": ":rotating_light:",
            "reminder": ":rotating_light:",
            "resolved": ":white_check_mark:",
        }
        tail = (
            f" (seen on {self.count} consecutive passes)"
            if self.kind != "resolved"
            else " (condition cleared)"
        )
        return f"{icon[self.kind]} [{label[self.kind]}] {self.key}: {self.message}{tail}"

    def to_json(self) -> dict[str, Any]:
        """The webhook body: Slack-compatible ``text`` plus the structured fields."""
        since = dt.datetime.fromtimestamp(self.since, tz=dt.UTC)
        return {
            "text": self.text,
            "status": self.kind,
            "condition": self.key.condition.value,
            "app": self.key.app,
            "subject": self.key.subject,
            "message": self.message,
            "count": self.count,
            "since": since.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "request_id": self.request_id,
        }


class AlertSink(Protocol):
    """Receives notices; must return at once (no I/O on the caller's task)."""

    def notify(self, notice: Notice) -> None: ...


class Alerts:
    """Tracks conditions and notifies the sinks (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Clock,
        sinks: Sequence[AlertSink] = (),
        threshold: int = 3,
        renotify_interval: float = 14_400.0,
    ) -> None:
        if threshold < 1:
            raise ValueError("the alert threshold must be at least 1")
        self._clock = clock
        self.sinks = list(sinks)
        self.threshold = threshold
        self.renotify_interval = renotify_interval
        self._alerts: dict[AlertKey, Alert] = {}

    def threshold_for(self, condition: Condition) -> int:
        """Consecutive observations before ``condition`` fires."""
        return 1 if condition in IMMEDIATE else self.threshold

    def observe(
        self,
        seen: Iterable[Observation],
        *,
        scope: Callable[[AlertKey], bool],
    ) -> None:
        """Record one pass: every key in ``seen`` counts up (and may fire); every tracked key
        in ``scope`` that was not seen resolves."""
        now_wall = self._clock.now()
        current: dict[AlertKey, Observation] = {}
        for observation in seen:
            current.setdefault(observation.key, observation)
        for key, observation in current.items():
            alert = self._alerts.get(key)
            if alert is None:
                alert = Alert(key, observation.message, 0, now_wall)
                self._alerts[key] = alert
            alert.count += 1
            alert.message = observation.message
            alert.request_id = observation.request_id
            if not alert.firing and alert.count >= self.threshold_for(key.condition):
                alert.fired_at = now_wall
                alert.notified_at = self._clock.monotonic()
                self._send("firing", alert)
        for key in [k for k in self._alerts if k not in current and scope(k)]:
            self._resolve(key)

    def resolve_where(self, scope: Callable[[AlertKey], bool]) -> None:
        """Resolve every tracked key in ``scope`` (its app left the desired state)."""
        for key in [k for k in self._alerts if scope(k)]:
            self._resolve(key)

    def _resolve(self, key: AlertKey) -> None:
        alert = self._alerts.pop(key)
        if alert.firing:
            self._send("resolved", alert)

    def remind(self) -> None:
        """Re-notify every alert that has fired and was last notified long enough ago."""
        if self.renotify_interval <= 0:
            return
        now = self._clock.monotonic()
        for alert in self._alerts.values():
            if alert.notified_at is None or not alert.firing:
                continue
            if now - alert.notified_at >= self.renotify_interval:
                alert.notified_at = now
                self._send("reminder", alert)

    async def run(self, *, check_every: float | None = None) -> None:
        """Send reminders forever (run it as a task)."""
        period = check_every or min(60.0, max(0.05, self.renotify_interval / 4 or 60.0))
        while True:
            await self._clock.sleep(period)
            self.remind()

    def firing(self) -> list[Alert]:
        """The alerts firing now, by key."""
        return sorted((a for a in self._alerts.values() if a.firing), key=lambda a: a.key)

    def pending(self) -> list[Alert]:
        """Keys seen but not (yet) firing."""
        return sorted((a for a in self._alerts.values() if not a.firing), key=lambda a: a.key)

    def get(self, key: AlertKey) -> Alert | None:
        """The tracked alert of ``key``, firing or not."""
        return self._alerts.get(key)

    def _send(self, kind: NoticeKind, alert: Alert) -> None:
        notice = Notice(
            kind=kind,
            key=alert.key,
            message=alert.message,
            count=alert.count,
            since=alert.first_seen,
            request_id=alert.request_id,
        )
        for sink in self.sinks:
            try:
                sink.notify(notice)
            except Exception:  # one broken sink must not silence the others
                logger.exception("alert sink %s failed", type(sink).__name__)


# ------------------------------------------------------------------------------ sinks


class LogSink:
    """Alerts as log events (``event=alert``): firing and reminders at ERROR, resolved at
    WARNING."""

    def __init__(self, log: logging.Logger | None = None) -> None:
        self.log = log or logger

    def notify(self, notice: Notice) -> None:
        level = logging.WARNING if notice.kind == "resolved" else logging.ERROR
        self.log.log(
            level,
            "alert %s: %s",
            notice.kind,
            notice.text,
            extra={
                "event": "alert",
                "alert": notice.kind,
                "condition": notice.key.condition.value,
                "app": notice.key.app,
                "subject": notice.key.subject,
                "count": notice.count,
                "request_id": notice.request_id,
            },
        )


class GaugeSink:
    """Keeps ``set_count(app, condition, firing)`` equal to the number of alerts firing.

    A series appears with the first alert of its (app, condition) and goes back to 0 when the
    last resolves; apps come from the desired-state files, so the label set stays bounded.
    """

    def __init__(self, set_count: Callable[[str, str, int], None]) -> None:
        self._set = set_count
        self._firing: dict[tuple[str, str], int] = {}

    def notify(self, notice: Notice) -> None:
        key = (notice.key.app, notice.key.condition.value)
        if notice.kind == "firing":
            self._firing[key] = self._firing.get(key, 0) + 1
        elif notice.kind == "resolved":
            self._firing[key] = max(0, self._firing.get(key, 0) - 1)
        else:
            return
        self._set(*key, self._firing[key])


@dataclass
class _Outbox:
    notices: deque[Notice] = field(default_factory=deque)
    dropped: int = 0
    wakeup: anyio.Event | None = None


class WebhookSink:
    """POSTs notices as JSON to a webhook from its own task (:meth:`run`), never blocking.

    ``http`` is an ``httpx.AsyncClient`` owned by the caller; every delivery gets ``timeout``
    seconds and up to ``attempts`` tries ``retry_delay`` seconds apart (on the clock), then is
    dropped with a warning.  At most ``max_queued`` notices wait; further ones are dropped.
    """

    def __init__(
        self,
        url: SecretStr,
        *,
        http: httpx.AsyncClient,
        clock: Clock,
        timeout: float = 5.0,
        attempts: int = 3,
        retry_delay: float = 2.0,
        max_queued: int = 100,
    ) -> None:
        self._url = url
        self._http = http
        self._clock = clock
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self.max_queued = max_queued
        self._outbox = _Outbox()
        self.delivered = 0
        self.failed = 0

    @property
    def queued(self) -> int:
        """Notices waiting to be sent."""
        return len(self._outbox.notices)

    @property
    def dropped(self) -> int:
        """Notices dropped because the queue was full."""
        return self._outbox.dropped

    def notify(self, notice: Notice) -> None:
        box = self._outbox
        if len(box.notices) >= self.max_queued:
            box.dropped += 1
            logger.warning(
                "alert webhook queue full (%d): dropped the %s notice of %s",
                self.max_queued,
                notice.kind,
                notice.key,
            )
            return
        box.notices.append(notice)
        if box.wakeup is not None:
            box.wakeup.set()
            box.wakeup = None

    async def run(self) -> None:
        """Deliver queued notices forever (run it as a task)."""
        box = self._outbox
        while True:
            while not box.notices:
                box.wakeup = anyio.Event()
                await box.wakeup.wait()
            await self._deliver(box.notices[0])
            box.notices.popleft()

    async def _deliver(self, notice: Notice) -> None:
        body = notice.to_json()
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                response = await self._http.post(
                    self._url.get_secret_value(), json=body, timeout=self.timeout
                )
            except httpx.HTTPError as exc:
                problem = type(exc).__name__  # never str(exc): it may carry the URL
            else:
                if response.is_success:
                    self.delivered += 1
                    return
                problem = f"HTTP {response.status_code}"
            if attempt < self.attempts:
                await self._clock.sleep(self.retry_delay * attempt)
        self.failed += 1
        logger.warning(
            "alert webhook delivery of the %s notice of %s failed after %d attempts: %s",
            notice.kind,
            notice.key,
            self.attempts,
            problem,
        )
