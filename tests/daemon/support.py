"""Test support for the daemon: an in-process daemon against the emulator, on virtual time.

:func:`daemon_world` builds the emulator (in-process transport) and the daemon's real parts
(client with the telemetry hook, executor, alerts with a recording sink, metrics, work queue,
watcher) on one :class:`~controller.testing.FakeClock`, runs the daemon in a task group
inside the test body, and stops it (gracefully) when the block ends.  Nothing sleeps in wall
time: the clock jumps whenever every task is blocked.  The client's timeouts are the settings'
defaults, and :class:`HangingTransport` sits between it and the emulator, so a test can make
the API stop answering (a hung API, on the virtual clock).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import anyio
import httpx
from anyio.abc import TaskStatus
from pydantic import SecretStr

from controller.daemon.loop import Daemon, Offload, ReconcileFn
from controller.daemon.scheduling import ClockTicker
from controller.daemon.sdnotify import Notifier
from controller.daemon.telemetry import Telemetry
from controller.daemon.watching import DirWatcher
from controller.emulator import Behaviour, EmulatorState, EmulatorTransport, build_app
from controller.execution.executor import Executor, ExecutorSettings
from controller.flyapi import MachinesClient, RateLimits
from controller.loading.loader import LoadResult, load_dir
from controller.observability.alerts import Alerts, GaugeSink, Notice
from controller.observability.health import build_health_app
from controller.observability.logging import Redactor
from controller.observability.metrics import Metrics
from controller.settings import DaemonSettings
from controller.testing import FakeClock
from tests.executor.support import TOKEN, launch_id_factory

IMAGE_V1 = "registry.fly.io/web:v1"
IMAGE_V2 = "registry.fly.io/web:v2"

#: Fly-like behaviour, with boot and checks short and rate limits off.
FAST = Behaviour(
    rate_limits=False,
    boot_seconds=1.0,
    stop_seconds=0.5,
    destroy_seconds=0.2,
    checks_pass_seconds=0.5,
    wait_poll_seconds=0.25,
)
#: Executor timings that keep virtual time small.
EXECUTOR = ExecutorSettings(smoke_seconds=1.0, create_relist_delay=0.2, lease_wait=10.0)


def app_file(
    name: str,
    *,
    image: str = IMAGE_V1,
    regions: dict[str, int] | None = None,
    max_unavailable: int = 1,
    env: dict[str, str] | None = None,
) -> str:
    """A desired-state file: one group ``web`` with an HTTP check."""
    regions = regions or {"ams": 2}
    region_text = ", ".join(f"{r}: {n}" for r, n in regions.items())
    env_text = ""
    if env:
        env_text = "\n    env: {" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in env.items()) + "}"
    return f"""app: {name}
defaults:
  config:
    image: {image}
    guest: {{cpu_kind: shared, cpus: 1, memory_mb: 256}}{env_text}
    checks:
      http: {{type: http, port: 8080, path: /healthz, interval: 5s, timeout: 1s}}
groups:
  web:
    regions: {{{region_text}}}
    update: {{max_unavailable: {max_unavailable}, wait_timeout: 60s}}
"""


class RecordingSink:
    """An alert sink that keeps every notice."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def notify(self, notice: Notice) -> None:
        self.notices.append(notice)

    def kinds(self, condition: str | None = None) -> list[str]:
        """Notice kinds, in order (of one condition)."""
        return [n.kind for n in self.notices if condition is None or n.key.condition == condition]


class HangingTransport(httpx.AsyncBaseTransport):
    """The in-process emulator behind a switch that turns it into a hung API.

    While hung, a request is taken and never answered, and a request already in flight gets
    no answer either (the emulator may still act on it): httpx's read timeout ends it, here on
    the virtual clock (``httpx.ReadTimeout`` after the request's read timeout, counted from
    when it was sent).  :meth:`release` cuts the hung requests at once
    (``httpx.RemoteProtocolError``), as the chaos suite's hostile proxy cuts its connections
    when it switches, and later requests are answered again.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: FakeClock) -> None:
        self._inner = inner
        self._clock = clock
        self.hung = False
        self._released = anyio.Event()
        self._trigger: Callable[[httpx.Request], bool] | None = None
        self.unanswered = 0
        """Requests that got no answer."""

    def hang(self) -> None:
        """From now on nothing is answered."""
        self.hung = True
        self._released = anyio.Event()

    def hang_from(self, trigger: Callable[[httpx.Request], bool]) -> None:
        """Hang from the first request that ``trigger`` accepts (that one included)."""
        self._trigger = trigger

    def release(self) -> None:
        """Answer again; the requests left hanging are cut."""
        self.hung = False
        self._trigger = None
        self._released.set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = self._clock.monotonic()
        if self._trigger is not None and self._trigger(request):
            self._trigger = None
            self.hang()
        if not self.hung:
            response = await self._inner.handle_async_request(request)
            if not self._hung_meanwhile():
                return response
            await response.aclose()
        await self._no_answer(request, sent)

    def _hung_meanwhile(self) -> bool:
        """Whether the API hung while the emulator handled the request (its answer is lost)."""
        return self.hung

    async def _no_answer(self, request: httpx.Request, sent: float) -> NoReturn:
        self.unanswered += 1
        released = self._released
        timeout = request.extensions.get("timeout", {}).get("read")
        read = math.inf if timeout is None else float(timeout)
        timed_out = False
        async with anyio.create_task_group() as tg:

            async def expire() -> None:
                nonlocal timed_out
                await self._clock.sleep(max(0.0, sent + read - self._clock.monotonic()))
                timed_out = True
                tg.cancel_scope.cancel()

            async def cut() -> None:
                await released.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(expire)
            tg.start_soon(cut)
        if timed_out:
            raise httpx.ReadTimeout("timed out", request=request)
        raise httpx.RemoteProtocolError("Server disconnected", request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class DaemonWorld:
    """A running daemon and everything around it."""

    clock: FakeClock
    directory: Path
    emulator: EmulatorState
    daemon: Daemon
    metrics: Metrics
    alerts: Alerts
    sink: RecordingSink
    executor: Executor
    health: httpx.AsyncClient
    api: HangingTransport
    notes: list[str] = field(default_factory=list)

    def write(self, name: str, text: str) -> None:
        """Write a desired-state file."""
        (self.directory / name).write_text(text, encoding="utf-8")

    def machines(self, app: str) -> list[dict[str, Any]]:
        """The app's machines that are not destroyed."""
        return [
            m
            for m in self.emulator.dump()["machines"]
            if m["app"] == app and m["state"] != "destroyed"
        ]

    def images(self, app: str) -> list[str]:
        """Images of the app's live machines, sorted."""
        return sorted(m["config"]["image"] for m in self.machines(app))

    def leases(self) -> list[dict[str, Any]]:
        """Live leases, any app."""
        return [m["lease"] for m in self.emulator.dump()["machines"] if m["lease"] is not None]

    def requests(self, method: str, path_contains: str = "") -> list[dict[str, Any]]:
        """Request-log entries of ``method`` whose path contains ``path_contains``."""
        return [
            e
            for e in self.emulator.requests()
            if e["method"] == method and path_contains in e["path"]
        ]

    async def until(self, condition: Callable[[], bool], *, within: float = 120.0) -> float:
        """Sleep on the virtual clock until ``condition()``; returns the virtual time taken."""
        start = self.clock.monotonic()
        while not condition():
            if self.clock.monotonic() - start > within:
                raise AssertionError(f"condition not met within {within}s of virtual time")
            await self.clock.sleep(0.05)
        return self.clock.monotonic() - start


class RecordingNotifier(Notifier):
    """A notifier that records what it would send."""

    def __init__(self, watchdog_usec: int | None = None) -> None:
        env = {} if watchdog_usec is None else {"WATCHDOG_USEC": str(watchdog_usec)}
        super().__init__(env)
        self.sent: list[str] = []

    def notify(self, *assignments: str) -> bool:
        self.sent.extend(assignments)
        return True


async def inline(load: Callable[[], LoadResult | None]) -> LoadResult | None:
    """Load on the event loop: while a worker thread parses, the virtual clock would jump to
    the next sleeper (every task is blocked), so tests that do not look at that load inline
    and stay deterministic.  ``offload=in_thread`` (the daemon's default) runs the real one."""
    return load()


@asynccontextmanager
async def daemon_world(
    directory: Path,
    *,
    apps: tuple[str, ...] = ("web",),
    behaviour: Behaviour = FAST,
    interval: float = 30.0,
    reconcile: Callable[[Executor], ReconcileFn] | None = None,
    notifier: Notifier | None = None,
    redactor: Redactor | None = None,
    emulator_token: str | None = None,
    load: Callable[[Path], LoadResult] = load_dir,
    offload: Offload = inline,
    **settings: Any,
) -> AsyncIterator[DaemonWorld]:
    """Run a daemon over ``directory`` against an in-process emulator (see the module doc)."""
    clock = FakeClock()
    emulator_app = build_app(clock=clock, seed=3, behaviour=behaviour, token=emulator_token)
    emulator: EmulatorState = emulator_app.state.emulator
    emulator.seed_fixtures({"apps": [{"name": a, "org_slug": "personal"} for a in apps]})
    metrics = Metrics()
    telemetry = Telemetry(metrics, clock)
    sink = RecordingSink()
    alerts = Alerts(clock=clock, sinks=[sink, GaugeSink(metrics.set_alerts)], threshold=3)
    options: dict[str, Any] = {
        "interval": interval,
        "interval_jitter": 0.0,
        "health_bind": "127.0.0.1:0",
        "grace_period": 30.0,
        **settings,
    }
    config = DaemonSettings(_env_file=None, desired_dir=directory, **options)
    api = HangingTransport(EmulatorTransport(emulator_app), clock)
    timeout = httpx.Timeout(config.request_timeout, connect=config.connect_timeout)
    async with httpx.AsyncClient(
        transport=api, base_url="http://emulator", timeout=timeout
    ) as http:
        client = MachinesClient(
            http,
            token=SecretStr(TOKEN),
            clock=clock,
            rng=random.Random(1),
            limits=RateLimits.disabled(),
            on_response=telemetry.on_response,
            retry=config.retry_policy(),
            wait_timeout_margin=config.wait_timeout_margin,
        )
        executor = Executor(
            client,
            clock=clock,
            rng=random.Random(2),
            settings=EXECUTOR,
            launch_ids=launch_id_factory(),
            on_event=telemetry.on_event,
        )
        daemon = Daemon(
            config,
            executor=executor,
            telemetry=telemetry,
            alerts=alerts,
            clock=clock,
            rng=random.Random(3),
            notifier=notifier,
            redactor=redactor,
            reconcile=reconcile(executor) if reconcile is not None else None,
            load=load,
            offload=offload,
        )
        health_app = build_health_app(
            live=daemon.liveness, ready=daemon.readiness, metrics=metrics.render
        )
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=health_app), base_url="http://health"
            ) as health,
            anyio.create_task_group() as tg,
        ):
            ticker = ClockTicker(clock, interval)
            watcher = DirWatcher(directory, clock=clock, poll=0.5, debounce=0.25)

            async def run(*, task_status: TaskStatus[None]) -> None:
                await daemon.run(ticker=ticker, watcher=watcher, task_status=task_status)

            await tg.start(run)
            world = DaemonWorld(
                clock, directory, emulator, daemon, metrics, alerts, sink, executor, health, api
            )
            try:
                yield world
            finally:
                daemon.request_stop()
