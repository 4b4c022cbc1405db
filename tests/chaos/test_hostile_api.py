"""A slow or hung API: one that never answers, one that answers a load balancer's HTML 502, one
that trickles bytes. Every call must end within its documented timeout (``request_timeout`` plus
``connect_timeout`` per attempt, ``retry_max_attempts`` attempts, backoff capped at
``retry_max_delay``); the daemon's ``/healthz`` must turn unhealthy and its watchdog go quiet
while nothing progresses, and both recover on their own when the API comes back."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from hostile_api import HostileProxy, Mode

from controller.settings import Settings
from tests.chaos.harness import CLIENT_ENV, World, start_daemon, wait_until

pytestmark = pytest.mark.e2e


def call_bound() -> float:
    """The longest one API call may take under the chaos client settings, from the settings."""
    settings = Settings.model_validate(
        {k.removeprefix("MACHINE_RECONCILER_").lower(): v for k, v in CLIENT_ENV.items()}
    )
    attempts = settings.retry_max_attempts
    # One attempt's deadline covers connecting and the whole response (flyapi/exchange.py).
    per_attempt = settings.connect_timeout + settings.request_timeout
    return attempts * (per_attempt + settings.retry_max_delay)


def silence_bound(interval: float) -> float:
    """How long the daemon may stay healthy once the API stops answering, from the settings
    (the rule of ``Daemon.liveness``): the first attempt sent into the silence fails on its
    deadline (request plus connect timeout), then the retry gets one retry sleep (the backoff
    cap, or the floor after a 504) plus one request deadline, and never less than 3 x interval
    of silence.  The longest request (a ``/wait`` long-poll) is not in it."""
    settings = Settings.model_validate(
        {k.removeprefix("MACHINE_RECONCILER_").lower(): v for k, v in CLIENT_ENV.items()}
    )
    deadline = settings.connect_timeout + settings.request_timeout
    sleep = max(settings.retry_max_delay, settings.retry_policy().gateway_timeout_min)
    return max(3 * interval, deadline + sleep + deadline)


def updates(requests: list[dict[str, Any]]) -> int:
    """Machine updates the emulator answered (``POST /v1/apps/{app}/machines/{id}``)."""
    update = re.compile(r"/machines/[^/]+$")
    answered = [r for r in requests if r["method"] == "POST" and r["status"] == 200]
    return sum(1 for r in answered if update.search(r["path"]))


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("hang", marks=pytest.mark.chaos),
        "html502",
        pytest.param("trickle", marks=pytest.mark.chaos),
    ],
)
def test_plan_against_a_hostile_api_ends_within_its_timeout(world: World, mode: Mode) -> None:
    world.emulator.reset(41)
    world.write(1, {"iad": 1})
    upstream = int(world.emulator.url.rsplit(":", 1)[1])
    with HostileProxy(upstream, trickle_every=0.3) as proxy:
        proxy.mode = mode
        started = time.monotonic()
        proc = world.start("plan", str(world.directory), MACHINE_RECONCILER_API_URL=proxy.url)
        try:
            output, _ = proc.communicate(timeout=call_bound() + 6)
        except Exception:
            proc.kill()
            proc.communicate()
            raise
        taken = time.monotonic() - started
    assert proc.returncode == 1, output
    assert taken <= call_bound() + 5, f"{mode}: plan took {taken:.1f}s"


@pytest.mark.chaos
@pytest.mark.parametrize("in_flight", ["nothing", "wait"])
def test_a_hung_api_makes_the_daemon_unhealthy_and_it_recovers(
    world: World, tmp_path: Path, in_flight: str
) -> None:
    """The API hangs with nothing in flight (a reload's list meets it), or while an update's
    ``/wait`` long-poll is out (the switch cuts it; its retry, another long-poll, meets the
    hang): /healthz turns 503 within the silence bound either way, the watchdog goes quiet,
    and both recover on their own once the API answers again."""
    emulator = world.emulator
    emulator.reset(42)
    world.write(1, {"iad": 2})
    upstream = int(emulator.url.rsplit(":", 1)[1])
    notify = tmp_path / "notify.sock"
    with (
        HostileProxy(upstream) as proxy,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock,
    ):
        sock.bind(str(notify))
        sock.settimeout(0.1)
        pings: list[float] = []

        def drain() -> None:
            try:
                while True:
                    pings.extend(
                        time.monotonic()
                        for line in sock.recv(4096).decode().splitlines()
                        if line == "WATCHDOG=1"
                    )
            except TimeoutError:
                pass

        daemon = start_daemon(
            world.directory,
            proxy.url,
            tmp_path / "daemon.log",
            "--interval",
            "1",
            env={"NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "500000"},
        )
        try:
            wait_until(lambda: emulator.converged(1, {"iad": 2}), 20, "convergence")
            if in_flight == "wait":
                slow_wait = {"method": "GET", "path": "/wait", "latency": 30, "count": 1}
                emulator.call("POST", "/faults", slow_wait)
                world.write(2, {"iad": 2})
                wait_until(lambda: updates(emulator.requests()) > 0, 20, "an update")
                time.sleep(0.5)  # its /wait long-poll is out, held 30 s by the fault
                proxy.mode = "hang"
            else:
                proxy.mode = "hang"
                world.write(2, {"iad": 2})
            hung_at = time.monotonic()
            # The watcher notices the write within a second; then the silence bound.
            wait_until(
                lambda: daemon.get("/healthz").status_code == 503,
                1 + silence_bound(1) + 5,
                "/healthz to fail while the API hangs",
            )
            taken = time.monotonic() - hung_at
            print(f"{in_flight} in flight: unhealthy {taken:.1f}s after the API hung")
            drain()
            quiet_from = time.monotonic()
            time.sleep(2)
            drain()
            assert not [p for p in pings if p > quiet_from + 0.6], "the watchdog went quiet"

            proxy.mode = "pass"
            back_at = time.monotonic()
            wait_until(lambda: daemon.get("/healthz").status_code == 200, 60, "recovery")
            wait_until(lambda: emulator.converged(2, {"iad": 2}), 60, "convergence after")
            print(
                f"healthy and converged {time.monotonic() - back_at:.1f}s after the API came back"
            )
            drain()
            assert [p for p in pings if p > back_at], "the watchdog is fed again"
            assert daemon.stop(30) == 0
        finally:
            daemon.kill()
