"""The daemon: the same planner and executor as ``apply``, run forever, safely (DESIGN.md 7).

Moving parts, all in one anyio task group:

* **passes**: one right after start-up, then one every ``interval`` (jittered) from a
  :class:`~controller.daemon.scheduling.Ticker`: in production an apscheduler 3.x
  ``AsyncIOScheduler`` job (``max_instances=1``, ``coalesce=True``).  A pass
  (:meth:`Daemon.start_pass`) adds every app of this shard to the work queue (apps held back by a
  backoff or a requeue hint stay held) and completes when each of them has been reconciled once;
  the job itself returns at once, so an app in a long rollout never holds back the next pass of the
  others.  Tests call
  :meth:`Daemon.run_pass` (start and wait) directly, or tick on a fake clock.
* **the work queue** (:class:`~controller.daemon.workqueue.WorkQueue`): one item per app, per-item
  backoff, deduplication; ``max_concurrent_apps`` workers pull apps and call the executor's
  :func:`~controller.execution.reconciler.reconcile_app`, so one slow or failing app never delays
  the others.  Results decide what happens next: converged resets the backoff; a held lease or a
  capacity cooldown requeues after the executor's hint; failures back off.
* **reloads**: a change of the desired-state directory
  (:class:`~controller.daemon.watching.DirWatcher`, debounced) reloads it and enqueues the apps
  whose desired state changed, at once; SIGHUP
  (:meth:`Daemon.request_reload`) reloads and enqueues every app.  A broken file blocks its own
  app (alert ``bad_desired_state``); the others carry on.  Apps of other shards
  (:func:`~controller.daemon.scheduling.in_shard`) are left out at load time.  The files are
  read and parsed in a worker thread (``offload``), one reload at a time: a hostile file may
  take the loader up to its time bound (5 s), and ``/healthz``, the watchdog and the rollouts
  in flight must not stop for it.  The parsed result is applied on the event loop.
* **shutdown** (:meth:`Daemon.request_stop`, on SIGTERM/SIGINT): stop taking work, let no new
  machine operation start (the executor's in-flight limiter is closed: ``total_tokens = 0``),
  let the ones in flight finish within ``grace_period``, then cancel every app pass still
  running: the executor releases every lease in shielded ``finally`` blocks, so cancelled work
  still lets go of its leases.
* **observability**: :class:`~controller.daemon.telemetry.Telemetry` turns API responses and
  executor events into metrics and action logs; app results feed the alerts; :meth:`Daemon.liveness`
  and :meth:`Daemon.readiness` back ``/healthz`` and ``/readyz``; systemd hears ``READY=1``,
  ``STATUS=``, ``WATCHDOG=1`` (only while the loop makes progress) and ``STOPPING=1``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from controller.clock import Clock
from controller.core.errors import ConfigError
from controller.daemon.scheduling import Ticker, in_shard
from controller.daemon.sdnotify import Notifier
from controller.daemon.telemetry import Telemetry, drift_left, observations, run_result
from controller.daemon.watching import DirWatcher
from controller.daemon.workqueue import WorkQueue
from controller.execution.executor import Executor
from controller.execution.outcomes import AppResult, Outcome, one_line
from controller.execution.reconciler import reconcile_app
from controller.loading.loader import LoadResult, load_dir
from controller.loading.pausing import marker_reason
from controller.model.desired import DesiredApp
from controller.observability.alerts import AlertKey, Alerts, Condition, Observation
from controller.observability.health import Check
from controller.observability.logging import Redactor
from controller.planning.normalize import sensitive_values
from controller.planning.plan import AppPlan
from controller.settings import DaemonSettings

__all__ = ["Daemon", "Offload", "ReconcileFn", "in_thread"]

logger = logging.getLogger(__name__)

ReconcileFn = Callable[[DesiredApp, int | None], Awaitable[AppResult]]
"""``(desired, previous managed count) -> result``: one app's pass."""

Offload = Callable[[Callable[[], LoadResult | None]], Awaitable[LoadResult | None]]
"""Runs a blocking load and returns its result: in a worker thread by default."""


async def in_thread(load: Callable[[], LoadResult | None]) -> LoadResult | None:
    """Run ``load`` in anyio's worker threads.  A cancelled caller (shutdown) does not wait for
    it: the loader is bounded in time and its result is then simply dropped."""
    return await anyio.to_thread.run_sync(load, abandon_on_cancel=True)


#: Liveness fails when neither a pass finished nor the loop showed work for this many intervals.
LIVENESS_INTERVALS = 3.0
#: Passes waiting for a slow app are remembered up to this many (then the oldest is dropped).
MAX_OPEN_PASSES = 16
#: How often the drain looks whether machine operations are still in flight (seconds).
DRAIN_POLL = 0.05

_FAILING = frozenset(
    {Outcome.ERROR, Outcome.BAD_REQUEST, Outcome.UNHEALTHY, Outcome.VOLUME, Outcome.ROLLOUT_HALTED}
)


# ------------------------------------------------------------------------------ the daemon


@dataclass
class _Pass:
    pending: set[str]
    mark: int
    """Work taken from the queue before the pass began does not count for it."""
    started: float
    """When it began (monotonic): it shows progress only if the API answered since."""
    attempts: int = 0
    """API attempts sent before it began: a pass that sent none (every app paused, held back
    or none at all) needed no answer to count."""
    done: anyio.Event = field(default_factory=anyio.Event)


def _managed_after(result: AppResult, plan: AppPlan) -> int:
    """Managed machines after a pass: those listed, plus creates and minus destroys that
    succeeded."""
    made = sum(1 for r in result.results if r.action == "create" and r.outcome is Outcome.OK)
    gone = sum(1 for r in result.results if r.action == "destroy" and r.outcome is Outcome.OK)
    return max(0, plan.managed_count + made - gone)


class Daemon:
    """The reconcile loop (see the module docstring).  Build, then ``await run()``."""

    def __init__(
        self,
        settings: DaemonSettings,
        *,
        executor: Executor,
        telemetry: Telemetry,
        alerts: Alerts,
        clock: Clock,
        rng: random.Random,
        notifier: Notifier | None = None,
        redactor: Redactor | None = None,
        reconcile: ReconcileFn | None = None,
        load: Callable[[Path], LoadResult] = load_dir,
        offload: Offload = in_thread,
        background: Iterable[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.telemetry = telemetry
        self.metrics = telemetry.metrics
        self.alerts = alerts
        self.clock = clock
        self.notifier = notifier or Notifier({})
        self.redactor = redactor
        self._reconcile = reconcile or self._reconcile_app
        self._load = load
        self._offload = offload
        self._reload_lock: anyio.Lock | None = None
        self._reload_wanted: anyio.Event | None = None
        self._background = list(background)
        self.queue: WorkQueue[str] = WorkQueue(clock=clock, rng=rng)
        self.apps: dict[str, DesiredApp] = {}
        self.blocked: dict[str, tuple[str, ...]] = {}
        self._sources: dict[str, str] = {}  # file -> the app it declared at the last load
        self.load_errors = 0
        self.loaded = False
        self.results: dict[str, AppResult] = {}
        self.passes = 0
        self.started_at = clock.monotonic()
        self.last_pass_at: float | None = None
        self.auth_failed: dict[str, str] = {}
        self.stopping = False
        self._managed: dict[str, int] = {}
        self.paused: dict[str, str] = {}
        """Apps left alone on their last turn, with the reason."""
        self._open: list[_Pass] = []
        self._taken = 0
        self._inflight: dict[str, anyio.CancelScope] = {}
        self._stop: anyio.Event | None = None
        self._watcher: DirWatcher | None = None
        self._reload_all = False

    async def _reconcile_app(self, desired: DesiredApp, previous: int | None) -> AppResult:
        return await reconcile_app(desired, executor=self.executor, previous_managed_count=previous)

    # ------------------------------------------------------------------ loading

    async def reload(self, *, force_all: bool = False) -> None:
        """Load the desired-state directory; enqueue changed apps (every app: ``force_all``).

        The files are read and parsed off the event loop (``offload``), one reload at a time.
        Raises :class:`~controller.core.errors.ConfigError` when the directory is missing at
        start-up; later, a missing directory keeps the last good state (and alerts).
        """
        if self._reload_lock is None:
            self._reload_lock = anyio.Lock()
        async with self._reload_lock:
            await self._reload(force_all)

    def _read(self, directory: Path) -> LoadResult | None:
        """The blocking part of a reload (in a worker thread): ``None`` if no directory."""
        if not directory.is_dir():
            return None
        return self._load(directory)

    async def _reload(self, force_all: bool) -> None:
        directory = self.settings.desired_dir
        try:
            read = await self._offload(lambda: self._read(directory))
        except Exception as exc:  # the loader never raises; if it does, keep the last state
            logger.exception("loading %s failed; keeping the last state", directory)
            key = AlertKey(str(directory), "-", Condition.BAD_DESIRED_STATE)
            message = f"loading {directory} failed: {type(exc).__name__}"
            self.alerts.observe(
                [Observation(key, message)],
                scope=lambda k: k.condition is Condition.BAD_DESIRED_STATE,
            )
            if not self.loaded:
                raise ConfigError(message) from exc
            return
        if read is None:
            if not self.loaded:
                raise ConfigError(f"desired-state directory not found: {directory}")
            logger.error("desired-state directory %s is gone; keeping the last state", directory)
            key = AlertKey(str(directory), "-", Condition.BAD_DESIRED_STATE)
            self.alerts.observe(
                [Observation(key, f"desired-state directory {directory} not found")],
                scope=lambda k: k.condition is Condition.BAD_DESIRED_STATE,
            )
            return
        self._apply_load(read, force_all)

    def _apply_load(self, loaded: LoadResult, force_all: bool) -> None:
        """Take a load's result as the desired state (on the event loop)."""
        directory = self.settings.desired_dir
        loaded = self._with_remembered_names(loaded)
        index, count = self.settings.shard_index, self.settings.shard_count
        mine = {name: app for name, app in loaded.apps.items() if in_shard(name, index, count)}
        blocked = {n: f for n, f in loaded.blocked.items() if in_shard(n, index, count)}
        changed = [name for name, app in mine.items() if self.apps.get(name) != app]
        gone = [name for name in self.apps if name not in mine]
        self.apps, self.blocked = mine, blocked
        if self.redactor is not None:
            self.redactor.update(sensitive_values(mine.values()))
        for name in gone:
            self._forget(name, blocked=name in blocked)
        self._observe_load(loaded, blocked)
        initial, self.loaded = not self.loaded, True
        if not initial:  # at start-up the first pass enqueues every app
            for name in mine if force_all else changed:
                self.queue.add(name, force=True)
        logger.info(
            "loaded %d app(s) of this shard from %s (%d changed, %d blocked by errors)",
            len(mine),
            directory,
            len(changed),
            len(blocked),
            extra={"event": "load", "apps": len(mine), "blocked": sorted(blocked)},
        )
        if not initial:  # at start-up READY=1 carries the first status
            self._status()

    def _with_remembered_names(self, loaded: LoadResult) -> LoadResult:
        """Block the app a file last declared when the file now names none (unreadable, a
        dangling symlink, emptied): that app is blocked, not silently dropped."""
        claimed = {file for files in loaded.blocked.values() for file in files}
        inherited = dict(loaded.blocked)
        for error in loaded.errors:
            name = self._sources.get(error.file)
            if error.file in claimed or name is None:
                continue
            if name in loaded.apps or name in inherited:
                continue  # the app moved to another file, which is fine
            inherited[name] = (error.file,)
        self._sources = {file: name for name, files in inherited.items() for file in files} | {
            app.source: name for name, app in loaded.apps.items() if app.source is not None
        }
        if len(inherited) == len(loaded.blocked):
            return loaded
        return replace(loaded, blocked=inherited)

    def _observe_load(self, loaded: LoadResult, blocked: Mapping[str, tuple[str, ...]]) -> None:
        index, count = self.settings.shard_index, self.settings.shard_count
        owner = {file: app for app, files in loaded.blocked.items() for file in files}
        seen: list[Observation] = []
        for error in loaded.errors:
            app = owner.get(error.file)
            subject = Path(error.file).name
            if app is None and not in_shard(subject, index, count):
                continue
            if app is not None and app not in blocked:
                continue
            logger.warning("desired state: %s", error, extra={"event": "load_error"})
            key = AlertKey(app or subject, subject, Condition.BAD_DESIRED_STATE)
            seen.append(Observation(key, str(error)))
        self.load_errors = len(seen)
        self.alerts.observe(seen, scope=lambda k: k.condition is Condition.BAD_DESIRED_STATE)

    def _forget(self, name: str, *, blocked: bool) -> None:
        """``name`` is no longer ours to reconcile (removed, blocked, or another shard's)."""
        self.queue.discard(name)
        self._managed.pop(name, None)
        self.results.pop(name, None)
        self.auth_failed.pop(name, None)
        self.metrics.forget_app(name)
        self.metrics.set_paused(name, None)
        self.paused.pop(name, None)
        self.alerts.resolve_where(
            lambda k: k.app == name and k.condition is not Condition.BAD_DESIRED_STATE
        )
        self._pass_progress(name)
        if not blocked:
            logger.info("app %s left the desired state: no longer reconciled", name)

    def request_reload(self) -> None:
        """SIGHUP: reload now and enqueue every app.  Returns at once: the reload runs in the
        daemon's own task (several requests while one runs make one more reload)."""
        if self.stopping:
            return
        self._reload_all = True
        if self._reload_wanted is not None:
            self._reload_wanted.set()

    async def _reloads(self) -> None:
        """Carry out :meth:`request_reload`, one reload at a time."""
        while True:
            wanted = self._reload_wanted = anyio.Event()
            if self._reload_all:
                wanted.set()
            await wanted.wait()
            self._reload_all = False
            if self._watcher is not None:
                # Before reading: a change made while the files are read is seen afterwards.
                self._watcher.rebase()
            await self.reload(force_all=True)  # loaded before: a missing directory never raises

    # ------------------------------------------------------------------ passes

    def start_pass(self) -> _Pass:
        """Enqueue every app of this shard now; the returned pass completes once each was
        reconciled after this call.  Apps held back by a backoff or a requeue hint are not run
        early (they count as done); an app being reconciled runs again right after."""
        current = _Pass(
            pending=set(),
            mark=self._taken,
            started=self.clock.monotonic(),
            attempts=self.executor.client.api_calls().attempts,
        )
        if self.stopping:
            current.done.set()
            return current
        for name in list(self.apps):
            if self.queue.held_until(name) is not None and not self.queue.is_processing(name):
                continue
            self.queue.add(name)
            current.pending.add(name)
        self._open.append(current)
        if len(self._open) > MAX_OPEN_PASSES:  # a very long rollout: forget the oldest
            self._open.pop(0).done.set()
        if not current.pending:
            self._finish_pass(current)
        return current

    async def run_pass(self) -> None:
        """:meth:`start_pass`, then wait until that pass completed."""
        await self.start_pass().done.wait()

    async def _tick(self) -> None:
        """The scheduled job: start a pass and return at once (a slow app must not hold back
        the next pass of every other app; the queue deduplicates)."""
        self.start_pass()

    def _pass_progress(self, name: str, taken: int | None = None) -> None:
        for current in list(self._open):
            if taken is not None and taken <= current.mark:
                continue
            current.pending.discard(name)
            if not current.pending:
                self._finish_pass(current)

    def _finish_pass(self, current: _Pass) -> None:
        if current in self._open:
            self._open.remove(current)
        self.passes += 1
        # A pass whose every call failed (a hung or failing API) finished, but made no
        # progress: liveness must not count it, or /healthz and the watchdog never notice.
        calls = self.executor.client.api_calls()
        if calls.attempts == current.attempts or calls.last_answer >= current.started:
            self.last_pass_at = self.clock.monotonic()
            self.metrics.pass_finished(self.clock.now())
        current.done.set()
        self._status()

    # ------------------------------------------------------------------ workers

    async def _worker(self) -> None:
        while True:
            name = await self.queue.get()
            if name is None:
                return
            self._taken += 1
            taken = self._taken
            try:
                await self._process(name)
            finally:
                self.queue.done(name)
                self._pass_progress(name, taken)

    def pause_reason(self, desired: DesiredApp) -> str | None:
        """Why ``desired`` must be left alone now (file, ``--pause-app``, marker), or None.
        The marker is looked up on every pass, so creating it needs no reload."""
        if desired.paused is not None:
            return desired.paused
        if desired.app in self.settings.paused_apps:
            return "--pause-app"
        return marker_reason(self.settings.desired_dir, desired.app)

    async def _process(self, name: str) -> None:
        desired = self.apps.get(name)
        if desired is None:
            return  # removed or blocked since it was queued
        paused = self.pause_reason(desired)
        self.metrics.set_paused(name, paused is not None)
        if paused is not None:
            if self.paused.get(name) != paused:
                logger.warning(
                    "%s is paused (%s): not reconciled until the pause is lifted",
                    name,
                    paused,
                    extra={"event": "paused", "app": name},
                )
            self.paused[name] = paused
            self.queue.forget(name)  # no backoff: look again with the next pass
            return
        if self.paused.pop(name, None) is not None:
            logger.info("%s is no longer paused", name, extra={"event": "resumed", "app": name})
        began = self.clock.monotonic()
        result: AppResult | None = None
        with anyio.CancelScope() as scope:
            self._inflight[name] = scope
            try:
                result = await self._reconcile(desired, self._managed.get(name))
            except Exception as exc:  # a bug in one app's pass must not stop the loop
                logger.exception("reconcile of %s failed unexpectedly", name)
                result = AppResult(app=name, error_class="unexpected", message=one_line(f"{exc!r}"))
            finally:
                del self._inflight[name]
        duration = self.clock.monotonic() - began
        self.telemetry.last_activity = self.clock.monotonic()
        if result is None or scope.cancelled_caught:
            self.metrics.reconcile_run(name, "cancelled", duration)
            logger.warning("reconcile of %s cancelled by shutdown", name, extra={"app": name})
            return
        if name in self.apps:  # still ours after the pass (a reload may have dropped it)
            self._record(name, result, duration)

    def _record(self, name: str, result: AppResult, duration: float) -> None:
        verdict = run_result(result)
        self.metrics.reconcile_run(name, verdict, duration)
        self.results[name] = result
        if result.plan is not None:
            # The re-list guard's count (DESIGN.md 3): the managed machines this pass leaves,
            # not the ones it listed (a first pass listing none and creating three leaves
            # three).  A pass whose list contradicted itself (staged creates) planned from a
            # list that hid machines: its count would switch the guard off, so it is not kept.
            if not any(r.outcome is Outcome.LIST_INCONSISTENT for r in result.results):
                self._managed[name] = _managed_after(result, result.plan)
            self.metrics.set_drift(name, drift_left(result))
        if result.fatal:
            self.auth_failed[name] = result.error_class or "unauthorized"
        else:
            self.auth_failed.pop(name, None)
        seen, untouched = observations(result)
        app_level_only = result.failed

        def scope(key: AlertKey) -> bool:
            if key.app != name or key.condition is Condition.BAD_DESIRED_STATE:
                return False
            if app_level_only:
                return key.subject == "-"
            return key.subject not in untouched

        self.alerts.observe(seen, scope=scope)
        hint = result.retry_after
        outcomes = {r.outcome for r in result.results}
        failing = verdict in ("failed", "refused") or bool(outcomes & _FAILING)
        if verdict == "converged":
            self.queue.forget(name)
            next_run = "with the next pass"
        elif not failing and hint is not None:
            self.queue.requeue_after(name, hint)
            next_run = f"in {hint:.0f}s"
        else:
            # An API that did not answer (timeouts, 5xx) is looked at again every interval:
            # one list per app per interval is cheap next to the client's own retries, and a
            # backoff grown to minutes over a long outage would keep the daemon from noticing
            # the API is back (and /healthz 503) for minutes after it is.
            at_most = self.settings.interval if result.error_retryable else None
            delay = self.queue.fail(name, at_least=hint or 0.0, at_most=at_most)
            next_run = f"in {delay:.1f}s (failure {self.queue.failures(name)})"
        counts = ", ".join(f"{n} {o}" for o, n in sorted(result.counts().items()))
        detail = f": {result.message}" if result.message else ""
        if verdict != "converged":
            level = logging.WARNING
        elif all(r.outcome is Outcome.NOOP for r in result.results):
            level = logging.DEBUG  # a quiet pass: nothing to report every interval
        else:
            level = logging.INFO
        logger.log(
            level,
            "%s: %s (%s) in %.1fs%s; next run %s",
            name,
            verdict,
            counts or "no actions",
            duration,
            detail,
            next_run,
            extra={
                "event": "reconcile",
                "app": name,
                "result": verdict,
                "duration": round(duration, 3),
                "error_class": result.error_class,
                "request_id": result.request_id,
            },
        )

    # ------------------------------------------------------------------ health

    def liveness(self) -> Check:
        """Healthy while the loop moves *and* the API answers (``/healthz``, the watchdog).

        * **The loop moves**: a pass finished within 3 x interval (a pass that sent API calls
          counts only if the API answered during it), or, while work is under way (a long
          rollout, an app reconciling), the loop showed work within 3 x interval: an API
          answer, an executor event, a wait the executor announced (a check interval, someone
          else's lease), an API call on the wire, or a retry sleep that is not over.  So a 60 s
          ``/wait`` long-poll with ``--interval 5`` is waiting, not stuck, and a loop stuck
          with no call in flight still fails after 3 x interval.
        * **The API answers**: once an attempt has failed (a timeout, a dropped connection, a
          5xx; an attempt past its own deadline counts as failed) and nothing answered since,
          the work above proves nothing: the executor announces waits and reports progress
          while the client retries a dead API.  The API is then given until both (a) it has
          been silent for 3 x interval, as a pass would be, and (b) the failed call's retry
          had its chance, one retry sleep plus one request deadline after the failure
          (:meth:`~controller.flyapi.client.MachinesClient.silence_grace`), and longer only
          while an attempt that began before the silence is within its own deadline (a
          long-poll started while the API answered).  Then the daemon is unhealthy until the
          API answers again, which recovers it at once.  A long-poll sent *after* the API went
          silent does not buy it another minute.  This holds while the daemon wants the API
          (an app reconciling or backing off after a failure), not with every app paused.

        Bookkeeping of the calls: :mod:`controller.flyapi.inflight`.
        """
        now = self.clock.monotonic()
        limit = LIVENESS_INTERVALS * self.settings.interval
        client = self.executor.client
        calls = client.api_calls()
        last_pass = self.last_pass_at if self.last_pass_at is not None else self.started_at
        since_pass = now - last_pass
        since_work = now - max(last_pass, self.telemetry.last_activity)
        working = bool(self._open or self._inflight)
        moving = since_pass <= limit or (working and (since_work <= limit or calls.waiting(now)))
        silence = calls.silence(now) if self._wants_api() else None
        answering = True
        if silence is not None:
            given = max(silence.since + limit, silence.failed_at + client.silence_grace())
            answering = now <= given or calls.older_pending(now, silence.since)
        return Check(
            moving and answering,
            {
                "passes": self.passes,
                "seconds_since_pass": round(since_pass, 3),
                "seconds_since_activity": round(since_work, 3),
                "limit_seconds": limit,
                "seconds_api_silent": None if silence is None else round(now - silence.since, 3),
            },
        )

    def _wants_api(self) -> bool:
        """Whether the daemon is trying to use the API: an app is being reconciled, or backs
        off after a failure.  With every app paused (or none) an old failure says nothing
        about the loop, and liveness does not hold it against it."""
        return bool(self._inflight) or any(self.queue.failures(name) for name in self.apps)

    def readiness(self) -> Check:
        """Ready once desired state is loaded and the API accepted the token."""
        problems: list[str] = []
        if not self.loaded:
            problems.append("desired state not loaded")
        if self.apps and not self.telemetry.token_verified:
            problems.append("the Machines API has not accepted the token yet")
        if self.auth_failed:
            apps = ", ".join(sorted(self.auth_failed))
            problems.append(f"the Machines API refused the token for: {apps}")
        if self.stopping:
            problems.append("shutting down")
        return Check(not problems, {"apps": len(self.apps), "problems": problems})

    def summary(self) -> str:
        """The one-line status (systemd ``STATUS=``, logs)."""
        verdicts = [run_result(r) for r in self.results.values()]
        converged = verdicts.count("converged")
        parts = [
            f"{len(self.apps)} app(s)",
            f"{converged} converged",
            f"{len(verdicts) - converged} not",
        ]
        if self.blocked or self.load_errors:
            parts.append(f"{max(len(self.blocked), self.load_errors)} bad file(s)")
        if self.paused:
            parts.append(f"{len(self.paused)} paused")
        parts.append(f"{len(self.alerts.firing())} alert(s)")
        parts.append(f"{self.passes} pass(es)")
        state = "stopping" if self.stopping else "running"
        return f"{state}: " + ", ".join(parts)

    def _status(self) -> None:
        self.notifier.status(self.summary())

    # ------------------------------------------------------------------ running

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: begin the graceful shutdown (see :meth:`run`)."""
        self.stopping = True
        self._stop_writes()
        if self._stop is not None:
            self._stop.set()

    def _stop_writes(self) -> None:
        """Writes still waiting in the client (pacing, retry backoff) are not sent."""
        stop_writes = getattr(self.executor.client, "stop_writes", None)
        if stop_writes is not None:
            stop_writes()

    async def run(
        self,
        *,
        ticker: Ticker | None,
        watcher: DirWatcher | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Load, then reconcile until :meth:`request_stop`; returns after the drain."""
        self._stop = anyio.Event()
        if self.stopping:
            self._stop.set()
        self.started_at = self.clock.monotonic()
        self._watcher = watcher
        if watcher is not None:
            # Before reading, as every reload does: a file changed while the first load reads
            # (in a worker thread) is seen as a change afterwards, not taken as already loaded.
            watcher.rebase()
        await self.reload()
        self.notifier.ready(self.summary())
        background = anyio.CancelScope()
        async with anyio.create_task_group() as tg:

            async def run_background() -> None:
                with background:
                    async with anyio.create_task_group() as bg:
                        bg.start_soon(self._passes, ticker)
                        bg.start_soon(self._reloads)
                        if watcher is not None:
                            bg.start_soon(self._watch, watcher)
                        bg.start_soon(self._watchdog)
                        for task in self._background:
                            bg.start_soon(task)

            tg.start_soon(run_background)
            for _ in range(self.settings.max_concurrent_apps):
                tg.start_soon(self._worker)
            task_status.started()
            await self._stop.wait()
            self.stopping = True
            self._stop_writes()
            logger.info(
                "stopping: no new work; waiting up to %gs for machine operations in flight",
                self.settings.grace_period,
                extra={"event": "stopping"},
            )
            self.notifier.stopping(self.summary())
            background.cancel()
            self.queue.shutdown()
            await self._drain()
        logger.info("stopped", extra={"event": "stopped"})

    async def _passes(self, ticker: Ticker | None) -> None:
        self.start_pass()
        if ticker is not None:
            await ticker.run(self._tick)

    async def _watch(self, watcher: DirWatcher) -> None:
        async for _ in watcher.changes():
            logger.info("desired-state files changed: reloading", extra={"event": "change"})
            await self.reload()

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        while True:
            if self.liveness().ok:
                self.notifier.watchdog()
            await self.clock.sleep(interval)

    async def _drain(self) -> None:
        """Let machine operations in flight finish (at most ``grace_period``), then cancel
        every app pass still running; their leases are released in shielded blocks."""
        limiter = self.executor.limiter
        limiter.total_tokens = 0  # nothing new starts; waiting operations stay waiting
        deadline = self.clock.monotonic() + self.settings.grace_period
        while self._inflight and limiter.borrowed_tokens > 0:
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                logger.warning(
                    "grace period over: cancelling %d machine operation(s) in flight "
                    "(their leases are released)",
                    limiter.borrowed_tokens,
                    extra={"event": "grace_expired"},
                )
                break
            await self.clock.sleep(min(DRAIN_POLL, remaining))
        for scope in self._inflight.values():
            scope.cancel()

    def in_flight(self) -> Iterator[str]:
        """Apps being reconciled now."""
        return iter(sorted(self._inflight))
