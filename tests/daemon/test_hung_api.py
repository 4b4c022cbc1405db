"""``/healthz`` and the watchdog against a hung API, on the virtual clock (issue 14).

Both directions of the liveness rule (:meth:`controller.daemon.loop.Daemon.liveness`): a hung
API turns the daemon unhealthy once the failed call's retry had its chance, a ``/wait`` in
flight or not, the watchdog goes quiet, and both recover when the API answers again; a
rollout whose long-poll legitimately takes most of a minute, or that meets one 5xx, stays
healthy throughout.  The client's timeouts and retry policy are the settings' defaults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon.support import (
    FAST,
    IMAGE_V2,
    DaemonWorld,
    RecordingNotifier,
    app_file,
    daemon_world,
)

#: How often the tests look at /healthz (virtual seconds).
LOOK = 0.5


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """A directory with one app, ``web`` (two machines in ams)."""
    directory = tmp_path / "desired"
    directory.mkdir()
    (directory / "web.yaml").write_text(app_file("web"))
    return directory


async def healthy_until_it_fails(w: DaemonWorld, *, within: float) -> float:
    """Look at /healthz every LOOK seconds until it answers 503; when that was (monotonic).
    Every look before it must have answered 200 (no flapping on the way)."""
    start = w.clock.monotonic()
    while (await w.health.get("/healthz")).status_code == 200:
        assert w.clock.monotonic() - start <= within, "still healthy"
        await w.clock.sleep(LOOK)
    return w.clock.monotonic()


async def unhealthy_until_it_recovers(w: DaemonWorld, *, within: float) -> float:
    """Look at /healthz every LOOK seconds until it answers 200 again; when that was."""
    start = w.clock.monotonic()
    while (await w.health.get("/healthz")).status_code == 503:
        assert w.clock.monotonic() - start <= within, "never recovered"
        await w.clock.sleep(LOOK)
    return w.clock.monotonic()


@pytest.mark.parametrize("interval", [5, 60])
async def test_a_hung_api_turns_healthz_unhealthy_and_it_recovers(
    desired: Path, interval: float
) -> None:
    """No call in flight when the API hangs: a reload lists, the list gets no answer.
    Healthy until the list failed and its retry had its chance (one retry sleep plus one
    request deadline), 503 from then on with the watchdog quiet, 200 and fed again as soon as
    the API answers; then the rollout completes."""
    notifier = RecordingNotifier(watchdog_usec=4_000_000)
    async with daemon_world(desired, interval=interval, notifier=notifier) as w:
        await w.until(lambda: w.daemon.passes >= 1 and w.daemon.results["web"].converged)
        client = w.executor.client
        w.api.hang()
        hung_at = w.clock.monotonic()
        w.write("web.yaml", app_file("web", image=IMAGE_V2))
        failed_at = await healthy_until_it_fails(w, within=600)
        silence = client.api_calls().silence(failed_at)
        assert silence is not None
        read_timeout = w.daemon.settings.request_timeout
        # The first list was sent once the watcher saw the change, and failed on its timeout.
        assert silence.failed_at - silence.since == pytest.approx(read_timeout)
        assert silence.since - hung_at <= 1.0
        # Unhealthy at the first look past both the failure plus the grace and 3 x interval of
        # silence; not a look earlier.
        given = max(silence.failed_at + client.silence_grace(), silence.since + 3 * interval)
        assert failed_at - given == pytest.approx(LOOK / 2, abs=LOOK / 2)
        print(f"interval {interval}: unhealthy {failed_at - hung_at:.1f}s after the API hung")

        pings = notifier.sent.count("WATCHDOG=1")
        await w.clock.sleep(30)
        assert notifier.sent.count("WATCHDOG=1") == pings, "no watchdog while the API hangs"
        assert (await w.health.get("/healthz")).json()["seconds_api_silent"] >= 100

        w.api.release()
        back_at = w.clock.monotonic()
        healthy_at = await unhealthy_until_it_recovers(w, within=300)
        print(f"healthy {healthy_at - back_at:.1f}s after the API came back")
        await w.clock.sleep(5)
        assert notifier.sent.count("WATCHDOG=1") > pings, "the watchdog is fed again"
        await w.until(lambda: w.images("web") == [IMAGE_V2] * 2, within=600)
        assert w.daemon.liveness().ok


@pytest.mark.parametrize("interval", [5, 60])
async def test_a_wait_in_flight_when_the_api_hangs_is_given_its_own_deadline(
    desired: Path, interval: float
) -> None:
    """The API hangs from an update's ``/wait`` long-poll on: it stays healthy while the
    long-poll is within its deadline (60 s plus the margin) and then for one retry sleep and
    one request deadline after the first failure (the long-poll's, or the lease refresh sent
    meanwhile; a retried long-poll does not earn another minute), then turns 503 and
    recovers when the API answers."""
    async with daemon_world(desired, interval=interval) as w:
        await w.until(lambda: w.daemon.passes >= 1 and w.daemon.results["web"].converged)
        client = w.executor.client
        w.api.hang_from(lambda request: request.url.path.endswith("/wait"))
        w.write("web.yaml", app_file("web", image=IMAGE_V2))
        await w.until(lambda: w.api.hung)
        hung_at = w.clock.monotonic()
        failed_at = await healthy_until_it_fails(w, within=600)
        silence = client.api_calls().silence(failed_at)
        assert silence is not None
        settings = w.daemon.settings
        long_poll = 60 + settings.wait_timeout_margin  # the /wait's read timeout
        # The first failure: the long-poll's timeout, or a lease refresh sent meanwhile.
        assert silence.failed_at - hung_at <= long_poll
        given = max(silence.failed_at + client.silence_grace(), silence.since + 3 * interval)
        assert failed_at - given == pytest.approx(LOOK / 2, abs=LOOK / 2)
        print(f"interval {interval}: unhealthy {failed_at - hung_at:.1f}s after the API hung")

        w.api.release()
        back_at = w.clock.monotonic()
        healthy_at = await unhealthy_until_it_recovers(w, within=300)
        print(f"healthy {healthy_at - back_at:.1f}s after the API came back")
        await w.until(lambda: w.images("web") == [IMAGE_V2] * 2, within=600)


async def test_a_long_poll_that_legitimately_takes_most_of_a_minute_stays_healthy(
    desired: Path,
) -> None:
    """Machines that take 50 s to boot: each create's ``/wait`` long-poll is out for 50 s,
    more than 3 x interval (15 s), and the daemon stays healthy all along."""
    slow = FAST.model_copy(update={"boot_seconds": 50.0})
    async with daemon_world(desired, interval=5, behaviour=slow) as w:
        seen: list[int] = []
        while not (w.daemon.passes >= 1 and "web" in w.daemon.results):
            seen.append((await w.health.get("/healthz")).status_code)
            await w.clock.sleep(LOOK)
        assert w.daemon.results["web"].converged
        assert w.clock.monotonic() - w.daemon.started_at >= 50, "the long-poll was long"
        assert set(seen) == {200}
        waits = w.requests("GET", "/wait")
        assert waits, "the rollout long-polled"


async def test_one_server_error_in_a_rollout_does_not_flap_healthz(desired: Path) -> None:
    """A 503 on the update's long-poll, retried after a sleep, then answered: a failed attempt
    with an answer soon after is not a hung API (``--interval 1``: a 3 s limit)."""
    async with daemon_world(desired, interval=1) as w:
        await w.until(lambda: w.daemon.passes >= 1 and w.daemon.results["web"].converged)
        w.emulator.add_fault({"method": "GET", "path": r"/wait", "status": 503, "count": 1})
        w.write("web.yaml", app_file("web", image=IMAGE_V2))
        seen: list[bool] = []
        while w.images("web") != [IMAGE_V2] * 2:
            seen.append(w.daemon.liveness().ok)
            await w.clock.sleep(0.1)
        assert all(seen)
        statuses = [e.get("status") for e in w.requests("GET", "/wait")]
        assert 503 in statuses


async def test_with_every_app_paused_a_hung_api_is_no_reason_to_restart(desired: Path) -> None:
    """The API hung and failed the app's pass; then the app is paused (a marker file).  Nothing
    wants the API any more: passes send no call and count, the old failure is not held
    against the loop, and /healthz stays 200 though the API still hangs."""
    async with daemon_world(desired, interval=5) as w:
        await w.until(lambda: w.daemon.passes >= 1 and w.daemon.results["web"].converged)
        w.api.hang()
        w.write("web.yaml", app_file("web", image=IMAGE_V2))
        await healthy_until_it_fails(w, within=600)
        (desired / "paused").mkdir()
        (desired / "paused" / "web").write_text("hand-fixing the hung API\n")
        await unhealthy_until_it_recovers(w, within=600)
        assert "web" in w.daemon.paused
        assert w.api.hung
        seen: list[int] = []
        for _ in range(240):
            seen.append((await w.health.get("/healthz")).status_code)
            await w.clock.sleep(LOOK)
        assert set(seen) == {200}
        assert w.daemon.passes >= 20


async def test_after_a_long_outage_the_daemon_notices_the_api_back_within_an_interval(
    desired: Path,
) -> None:
    """The API hangs for 20 minutes: passes fail again and again.  An app whose pass failed
    because the API did not answer is looked at again every interval, not after a backoff
    doubling to 5 minutes, so once the API answers /healthz is 200 and the rollout resumes
    within about one interval plus one pass, not minutes later."""
    interval = 5
    async with daemon_world(desired, interval=interval) as w:
        await w.until(lambda: w.daemon.passes >= 1 and w.daemon.results["web"].converged)
        w.api.hang()
        w.write("web.yaml", app_file("web", image=IMAGE_V2))
        await healthy_until_it_fails(w, within=600)
        await w.clock.sleep(20 * 60)
        assert w.daemon.queue.failures("web") >= 10, "the outage failed pass after pass"
        held = w.daemon.queue.held_until("web")
        assert held is None or held - w.clock.monotonic() <= interval
        w.api.release()
        back_at = w.clock.monotonic()
        healthy_at = await unhealthy_until_it_recovers(w, within=300)
        settings = w.daemon.settings
        # The held app runs within an interval; a request cut by the release is retried.
        bound = interval + settings.request_timeout + settings.connect_timeout + 5
        assert healthy_at - back_at <= bound
        print(f"healthy {healthy_at - back_at:.1f}s after a 20-minute outage")
        await w.until(lambda: w.images("web") == [IMAGE_V2] * 2, within=120)
