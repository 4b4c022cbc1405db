"""``machine-reconciler run``: the daemon's command line and its composition root.

:func:`add_run_parser` declares the flags; :func:`cmd_run` turns flags, environment and the
config file into :class:`~controller.settings.DaemonSettings` (one clear line and exit 1 when
they are invalid), configures logging, builds the API client, executor, alerts, metrics,
health server and :class:`~controller.daemon.loop.Daemon`, and runs them until a signal:

* SIGTERM / SIGINT: graceful stop (grace period, leases released), exit 0;
* a second SIGTERM / SIGINT: exit at once with 128 + the signal number (leases then expire on
  their short TTL);
* SIGHUP: reload the desired state and reconcile every app now.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import socket
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
import anyio.abc

from controller.core.errors import ConfigError

if TYPE_CHECKING:
    from controller.daemon.loop import Daemon
    from controller.daemon.sdnotify import Notifier
    from controller.observability.logging import Redactor
    from controller.settings import DaemonSettings

# The daemon's own modules (apscheduler, prometheus-client, uvicorn) and its settings model
# (pydantic-settings) are imported by cmd_run only: every other command of the CLI, and
# --help, start without them.

__all__ = ["add_run_parser", "cmd_run"]

logger = logging.getLogger("controller.daemon.loop")

EXIT_OK = 0
EXIT_ERROR = 1

_EPILOG = """\
precedence: command-line flags > environment (MACHINE_RECONCILER_*, FLY_API_TOKEN) >
config file (--config, $MACHINE_RECONCILER_CONFIG, or /etc/machine-reconciler/config.toml
when it exists; keys are the setting names, e.g. interval = 30) > defaults.

signals: SIGTERM/SIGINT stop gracefully (exit 0); a second one exits at once
(128 + signal number); SIGHUP reloads the desired state and reconciles every app.

endpoints: /healthz (a pass finished, or the loop made progress, within 3 x interval),
/readyz (desired state loaded, the API accepted the token), /metrics (Prometheus).
"""

#: flag attribute -> setting name
_FLAGS = {
    "dir": "desired_dir",
    "interval": "interval",
    "health_bind": "health_bind",
    "shard_index": "shard_index",
    "shard_count": "shard_count",
    "alert_webhook": "alert_webhook_url",
    "grace_period": "grace_period",
    "lease_wait": "lease_wait",
    "log_format": "log_format",
    "run_log_level": "log_level",
    "watch": "watch",
    "pause_app": "paused_apps",
}


def add_run_parser(subparsers: Any) -> None:
    """Add the ``run`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    run = subparsers.add_parser(
        "run",
        help="reconcile continuously (the daemon)",
        description="Reconcile DIR every interval, on file changes and on SIGHUP, until "
        "SIGTERM; serve /healthz, /readyz and /metrics.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Values are validated by the settings model (one error line, exit 1), not by argparse.
    run.add_argument(
        "dir", nargs="?", default=None, metavar="DIR", help="desired state (default desired_state)"
    )
    run.add_argument("--interval", metavar="SECONDS", help="between passes (default 60)")
    run.add_argument(
        "--health-bind", metavar="HOST:PORT", help="HTTP endpoints (default 127.0.0.1:9440)"
    )
    run.add_argument("--shard-index", metavar="I", help="this replica's shard (default 0)")
    run.add_argument("--shard-count", metavar="N", help="number of shards (default 1)")
    run.add_argument("--alert-webhook", metavar="URL", help="POST alerts here (JSON, Slack text)")
    run.add_argument("--config", metavar="FILE", type=Path, help="TOML config file")
    run.add_argument(
        "--grace-period", metavar="SECONDS", help="shutdown wait for operations (default 30)"
    )
    run.add_argument("--lease-wait", metavar="SECONDS", help="wait for others' leases (default 60)")
    run.add_argument("--log-format", choices=["auto", "json", "text"], help="default auto")
    run.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        default=None,
        help="do not watch DIR for changes (reconcile on the interval and SIGHUP only)",
    )
    run.add_argument(
        "--pause-app",
        metavar="APP",
        action="append",
        help="leave this app alone (repeatable); or create DIR/paused/APP while running",
    )
    run.add_argument(
        "--log-level",
        dest="run_log_level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default INFO",
    )


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (flags not given are left to env/TOML)."""
    values = {setting: getattr(args, flag, None) for flag, setting in _FLAGS.items()}
    global_level = getattr(args, "log_level", None)
    if values["log_level"] is None and global_level not in (None, "WARNING"):
        values["log_level"] = global_level  # `machine-reconciler --log-level DEBUG run`
    return {k: v for k, v in values.items() if v is not None}


def _error(message: str) -> None:
    print(f"machine-reconciler: error: {message}", file=sys.stderr)


def _settings(args: argparse.Namespace) -> DaemonSettings:
    """The settings, checked for what the daemon cannot start without."""
    from controller.settings import load_daemon_settings

    settings = load_daemon_settings(settings_overrides(args), config_file=args.config)
    if settings.api_token is None or not settings.api_token.get_secret_value().strip():
        raise ConfigError(
            "no Fly API token: set FLY_API_TOKEN or MACHINE_RECONCILER_API_TOKEN_FILE"
        )
    if not settings.desired_dir.is_dir():
        raise ConfigError(f"desired-state directory not found: {settings.desired_dir}")
    return settings


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until a signal; the process exit code."""
    try:
        settings = _settings(args)
        sock = _listen(settings)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_ERROR
    from controller.observability.logging import Redactor, configure_logging

    redactor = Redactor()
    redactor.add_secrets(
        settings.api_token.get_secret_value() if settings.api_token else None,
        settings.alert_webhook_url.get_secret_value() if settings.alert_webhook_url else None,
    )
    configure_logging(fmt=settings.log_format, level=settings.log_level, redactor=redactor)
    try:
        anyio.run(_run, settings, redactor, sock, backend="asyncio")
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_ERROR
    except BaseExceptionGroup as group:
        configs = group.subgroup(ConfigError)
        if configs is None:
            raise
        _error(str(configs.exceptions[0]))
        return EXIT_ERROR
    return EXIT_OK


def _listen(settings: DaemonSettings) -> socket.socket:
    """The health server's socket, bound now so a busy port is a start-up error."""
    from controller.observability.health import bind_socket

    try:
        return bind_socket(settings.health_host, settings.health_port)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot listen on {settings.health_bind}: {reason}") from None


async def _run(settings: DaemonSettings, redactor: Redactor, sock: socket.socket) -> None:
    import httpx

    from controller.clock import SystemClock
    from controller.daemon.loop import Daemon
    from controller.daemon.scheduling import ApschedulerTicker
    from controller.daemon.sdnotify import Notifier
    from controller.daemon.telemetry import Telemetry
    from controller.daemon.watching import DirWatcher
    from controller.execution.executor import Executor, ExecutorSettings
    from controller.flyapi import MachinesClient
    from controller.observability.alerts import (
        Alerts,
        AlertSink,
        GaugeSink,
        LogSink,
        WebhookSink,
    )
    from controller.observability.health import build_health_app, serve
    from controller.observability.metrics import Metrics

    clock = SystemClock()
    rng = random.Random()
    metrics = Metrics()
    telemetry = Telemetry(metrics, clock)
    notifier = Notifier()
    async with AsyncExitStack() as stack:
        stack.callback(sock.close)
        client = MachinesClient.from_settings(
            settings, clock=clock, rng=rng, on_response=telemetry.on_response
        )
        stack.push_async_callback(client.aclose)
        sinks: list[AlertSink] = [LogSink(), GaugeSink(metrics.set_alerts)]
        background = []
        if settings.alert_webhook_url is not None:
            http = httpx.AsyncClient(follow_redirects=False)
            stack.push_async_callback(http.aclose)
            webhook = WebhookSink(
                settings.alert_webhook_url,
                http=http,
                clock=clock,
                timeout=settings.alert_webhook_timeout,
            )
            sinks.append(webhook)
            background.append(webhook.run)
        alerts = Alerts(
            clock=clock,
            sinks=sinks,
            threshold=settings.alert_threshold,
            renotify_interval=settings.alert_renotify_interval,
        )
        background.append(alerts.run)
        executor = Executor(
            client,
            clock=clock,
            rng=rng,
            settings=ExecutorSettings.from_settings(settings),
            on_event=telemetry.on_event,
        )
        daemon = Daemon(
            settings,
            executor=executor,
            telemetry=telemetry,
            alerts=alerts,
            clock=clock,
            rng=rng,
            notifier=notifier,
            redactor=redactor,
            background=background,
        )
        app = build_health_app(live=daemon.liveness, ready=daemon.readiness, metrics=metrics.render)
        host, port = sock.getsockname()[:2]
        logger.info(
            "serving /healthz, /readyz and /metrics on %s:%s",
            host,
            port,
            extra={"event": "listening", "port": port},
        )
        watcher = (
            DirWatcher(settings.desired_dir, clock=clock, poll=settings.watch_interval)
            if settings.watch
            else None
        )
        ticker = ApschedulerTicker(settings.interval, settings.jitter_seconds)
        async with anyio.create_task_group() as tg:
            await tg.start(_signals, daemon, notifier, os._exit)
            tg.start_soon(serve, app, sock)
            await daemon.run(ticker=ticker, watcher=watcher)
            tg.cancel_scope.cancel()


async def _signals(
    daemon: Daemon,
    notifier: Notifier,
    exit_now: Callable[[int], NoReturn],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """SIGHUP reloads; the first SIGTERM/SIGINT stops gracefully, the second exits at once."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                logger.info("SIGHUP: reloading desired state", extra={"event": "signal"})
                daemon.request_reload()
            elif not daemon.stopping:
                logger.info("%s: stopping gracefully", name, extra={"event": "signal"})
                daemon.request_stop()
            else:
                logger.warning(
                    "%s again: exiting now; leases in flight expire on their TTL",
                    name,
                    extra={"event": "signal"},
                )
                notifier.stopping("exiting at once on a second signal")
                logging.shutdown()
                exit_now(128 + signum)
