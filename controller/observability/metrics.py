"""Prometheus metrics of the daemon (DESIGN.md 8), on a registry of their own.

Every metric lives on the :class:`~prometheus_client.CollectorRegistry` of one :class:`Metrics`
object that the composition root creates and passes around; nothing is registered on
prometheus-client's global default registry, so tests build as many as they like.  Names carry
the prefix ``machine_reconciler_``:

========================================================  =========  =========================
``reconcile_runs_total{app,result}``                      counter    one per app pass
``reconcile_duration_seconds``                            histogram  one app pass
``actions_total{app,action,outcome}``                     counter    one per machine action
``api_requests_total{endpoint,code}``                     counter    one per HTTP attempt
``api_request_duration_seconds{endpoint}``                histogram  one HTTP attempt
``conflicts_total{kind}``                                 counter    409s: version, lease
``drift_machines{app}``                                   gauge      machines left out of sync
``alerts_firing{app,condition}``                          gauge      alerts firing now
``lease_wait_seconds``                                    histogram  waits for others' leases
``last_successful_pass_timestamp_seconds``                gauge      unix time of the last pass
``app_paused{app}``                                       gauge      1 while an app is paused
========================================================  =========  =========================

This module knows nothing of the executor or the API client: the daemon translates their events
into the small methods below.

The ``app`` label has bounded cardinality: apps come from the desired-state files (one series
set per declared app, dropped by :meth:`Metrics.forget_app` when an app leaves), never from
what the API returns.  Alerts not about one app use ``app="-"``.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["PREFIX", "Metrics"]

PREFIX = "machine_reconciler_"

#: Passes range from a 50 ms no-op to a long rolling update.
_PASS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_API_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LEASE_BUCKETS = (0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 300)


class Metrics:
    """The daemon's instruments, registered on :attr:`registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconcile_runs = Counter(
            PREFIX + "reconcile_runs_total",
            "App reconcile passes by app and result (converged, partial, lease_blocked, "
            "refused, failed, cancelled).",
            ["app", "result"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            PREFIX + "reconcile_duration_seconds",
            "Duration of one app's reconcile pass.",
            buckets=_PASS_BUCKETS,
            registry=r,
        )
        self.actions = Counter(
            PREFIX + "actions_total",
            "Machine actions by app, kind (create, update, destroy, noop) and outcome.",
            ["app", "action", "outcome"],
            registry=r,
        )
        self.api_requests = Counter(
            PREFIX + "api_requests_total",
            "Machines API request attempts by endpoint and HTTP status (no_response: none).",
            ["endpoint", "code"],
            registry=r,
        )
        self.api_duration = Histogram(
            PREFIX + "api_request_duration_seconds",
            "Duration of one Machines API request attempt.",
            ["endpoint"],
            buckets=_API_BUCKETS,
            registry=r,
        )
        self.conflicts = Counter(
            PREFIX + "conflicts_total",
            "409 conflicts seen, by kind (version, lease).",
            ["kind"],
            registry=r,
        )
        self.drift = Gauge(
            PREFIX + "drift_machines",
            "Machines the last pass of an app left out of sync with the desired state.",
            ["app"],
            registry=r,
        )
        self.alerts = Gauge(
            PREFIX + "alerts_firing",
            "Alerts firing now, by app and condition.",
            ["app", "condition"],
            registry=r,
        )
        self.lease_wait = Histogram(
            PREFIX + "lease_wait_seconds",
            "Time spent waiting for a machine lease held by someone else.",
            buckets=_LEASE_BUCKETS,
            registry=r,
        )
        self.last_pass = Gauge(
            PREFIX + "last_successful_pass_timestamp_seconds",
            "Unix time at which the last complete pass over every app finished.",
            registry=r,
        )

        self.app_paused = Gauge(
            PREFIX + "app_paused",
            "1 while the daemon leaves an app alone (paused: true, a paused/<app> marker, "
            "--pause-app), else 0.",
            ["app"],
            registry=r,
        )

    # ------------------------------------------------------------------ recording

    def set_paused(self, app: str, paused: bool | None) -> None:
        """Whether ``app`` is paused now; None drops its series (the app left)."""
        if paused is None:
            with contextlib.suppress(KeyError):
                self.app_paused.remove(app)
            return
        self.app_paused.labels(app=app).set(1 if paused else 0)

    def reconcile_run(self, app: str, result: str, duration: float) -> None:
        """One pass of ``app`` ended with ``result`` after ``duration`` seconds."""
        self.reconcile_runs.labels(app=app, result=result).inc()
        self.reconcile_duration.observe(max(0.0, duration))

    def action(self, app: str, action: str, outcome: str) -> None:
        """One machine action of ``app`` ended."""
        self.actions.labels(app=app, action=action, outcome=outcome).inc()

    def api_request(self, endpoint: str, status: int | None, duration: float) -> None:
        """One API attempt; ``status`` is None when no response arrived."""
        code = "no_response" if status is None else str(status)
        self.api_requests.labels(endpoint=endpoint, code=code).inc()
        self.api_duration.labels(endpoint=endpoint).observe(max(0.0, duration))

    def conflict(self, kind: str) -> None:
        """A 409 of ``kind`` (``version`` or ``lease``)."""
        self.conflicts.labels(kind=kind).inc()

    def set_drift(self, app: str, machines: int) -> None:
        """``machines`` of ``app`` are out of sync after its last pass."""
        self.drift.labels(app=app).set(machines)

    def forget_app(self, app: str) -> None:
        """``app`` left the desired state (or this shard): drop its series (the gauges; the
        counters keep their totals, as Prometheus counters must)."""
        with contextlib.suppress(KeyError):
            self.drift.remove(app)

    def set_alerts(self, app: str, condition: str, firing: int) -> None:
        """``firing`` alerts of ``condition`` about ``app`` are firing now."""
        self.alerts.labels(app=app, condition=condition).set(firing)

    def lease_waited(self, seconds: float) -> None:
        """A wait for someone else's lease ended after ``seconds``."""
        self.lease_wait.observe(max(0.0, seconds))

    def pass_finished(self, unix_time: float) -> None:
        """A complete pass over every app finished at ``unix_time``."""
        self.last_pass.set(unix_time)

    # ------------------------------------------------------------------ reading

    def render(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float | None:
        """The current value of one sample (full name, e.g. ``..._total``), or None."""
        result = self.registry.get_sample_value(name, labels)
        return None if result is None else float(result)
