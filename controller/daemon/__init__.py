"""The daemon (``machine-reconciler run``): the reconcile loop and what keeps it going.

Owns the loop (:mod:`~controller.daemon.loop`), the per-app work queue with backoff, the
schedule and sharding, the desired-state directory watcher, the systemd notify protocol, and
the telemetry that turns API responses and results into metrics, action logs and alerts.

May import: :mod:`controller.execution`, :mod:`controller.observability`,
:mod:`controller.loading`, :mod:`controller.flyapi` and everything below them.  Never the CLI
or the emulator: the CLI builds the daemon's parts and hands them in.
"""
