"""Rollout policy: the executor's settings and how a plan is cut into ordered work.

DESIGN.md 5: per app, groups in file order; inside a group, updates roll in a sliding window of
the group's ``max_unavailable`` (a fraction of the group's machine count, at least 1, or an absolute
count when >= 1); creates run with bounded concurrency; destroys run last.  This module is pure
(no I/O): :func:`group_work` orders the plan, :func:`batches` cuts a group's updates, and
:class:`ExecutorSettings` holds every number the executor uses, with its default.

Within a group the executor runs creates *before* updates: a new machine that fails to become
healthy halts the group before any existing machine is touched (a free canary), and adding
capacity first keeps the group's serving capacity up during the rolling updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from controller.core import defaults as d
from controller.core.retry import Backoff, RetryPolicy
from controller.execution.leasing import LeasePolicy
from controller.execution.waiting import WaitPolicy
from controller.model.desired import DesiredApp, DesiredGroup
from controller.planning.plan import AppPlan, Create, Destroy, NoOp, Restart, Start, Stop, Update
from controller.settings import DaemonSettings, Settings

__all__ = ["ExecutorSettings", "GroupWork", "batch_size", "batches", "group_work"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    """Every number of the executor (seconds unless said otherwise), with its default."""

    max_in_flight: int = d.MAX_IN_FLIGHT
    """A global safety cap on machine operations in flight, across every app sharing the
    executor.  Concurrency comes from the groups' ``max_unavailable`` windows and the client's
    pacing (Fly limits requests per machine, not per token), so this cap is set high enough
    not to throttle a rollout: 512 lets a 1,000-machine group at 0.33 (a window of 330) move at
    its window's pace while still bounding open requests and memory if many apps roll at once."""
    create_concurrency: int = 1000
    """Creates of one group running at once.  The client paces the POSTs at Fly's per-app
    create limit (1/s, burst 3), which is the real bound; this only caps the waiting tasks."""
    destroy_concurrency: int = 4
    """Destroys of one app running at once."""
    lease_ttl: int = d.LEASE_TTL
    """Lease TTL, creates included.  30 s covers a normal update (stop, boot, 10 s smoke
    period) without a refresh, while a killed controller's lease expires within 30 s."""
    lease_refresh: float = d.LEASE_REFRESH
    lease_wait: float = d.LEASE_WAIT
    """How long to wait for another holder's lease before giving up (``--lease-wait``)."""
    lease_retry_cap: float = d.LEASE_RETRY_CAP
    """Longest single sleep between two looks at another holder's lease."""
    release_timeout: float = d.LEASE_RELEASE_TIMEOUT
    conflict_retries: int = d.CONFLICT_RETRIES
    """Re-read/re-plan/retry rounds after 409 version conflicts before requeueing."""
    conflict_backoff: Backoff = field(
        default_factory=lambda: Backoff(base=d.CONFLICT_BACKOFF_BASE, cap=d.CONFLICT_BACKOFF_CAP)
    )
    conflict_requeue: float = d.CONFLICT_REQUEUE
    capacity_backoff: Backoff = field(
        default_factory=lambda: Backoff(base=d.CAPACITY_BACKOFF_BASE, cap=d.CAPACITY_BACKOFF_CAP)
    )
    """Cooldown hint after capacity/quota errors (30 s doubling to 15 min)."""
    wait_chunk: float = d.WAIT_CHUNK
    check_poll_min: float = d.CHECK_POLL_MIN
    check_poll_max: float = d.CHECK_POLL_MAX
    check_read_max: float = d.CHECK_READ_MAX
    smoke_seconds: float = d.SMOKE_SECONDS
    created_404_grace: float = d.CREATED_404_GRACE
    create_attempts: int = 3
    """Creates tried for one slot after ambiguous failures (each preceded by a re-list)."""
    create_relist_delay: float = 1.0
    """Pause before re-listing by launch tag after an ambiguous create failure."""
    confirm_listings: int = 3
    """Listings (all machines + ``reconciler/managed=true``) that may confirm a staged create's
    first machine before the list counts as inconsistent (DESIGN.md 3)."""
    confirm_delay: float = 1.0
    """Pause before the second confirming listing, doubled before each later one."""
    destroy_wait: float = 30.0
    """How long to wait for a destroyed machine to reach ``destroyed`` (0: don't wait)."""
    api_retry: RetryPolicy = field(default_factory=RetryPolicy)
    """The client's retry numbers (transient backoff, ``Retry-After`` cap), which the
    executor's own decisions share: :meth:`retry_policy` adds the executor's numbers to it."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, lease_wait: float | None = None
    ) -> ExecutorSettings:
        """The executor's settings from the settings model: the API retry policy, and the
        daemon's ``lease_wait`` and ``max_in_flight``; ``lease_wait`` (a command-line flag)
        wins when given.  Everything else keeps its default (:mod:`controller.core.defaults`)."""
        wait = d.LEASE_WAIT
        in_flight = d.MAX_IN_FLIGHT
        if isinstance(settings, DaemonSettings):
            wait, in_flight = settings.lease_wait, settings.max_in_flight
        return cls(
            max_in_flight=in_flight,
            lease_wait=wait if lease_wait is None else lease_wait,
            api_retry=settings.retry_policy(),
        )

    def __post_init__(self) -> None:
        for name in ("max_in_flight", "create_concurrency", "destroy_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.conflict_retries < 0 or self.create_attempts < 1 or self.confirm_listings < 1:
            raise ValueError(
                "conflict_retries must be >= 0, create_attempts and confirm_listings >= 1"
            )
        if self.create_relist_delay < 0 or self.destroy_wait < 0 or self.confirm_delay < 0:
            raise ValueError("delays must not be negative")
        # The nested policies validate the rest.
        self.lease_policy()
        self.wait_policy()

    def lease_policy(self) -> LeasePolicy:
        """The lease timings."""
        return LeasePolicy(
            ttl=self.lease_ttl,
            refresh_every=self.lease_refresh,
            wait=self.lease_wait,
            retry_cap=self.lease_retry_cap,
            release_timeout=self.release_timeout,
        )

    def wait_policy(self) -> WaitPolicy:
        """The wait/verify/check timings."""
        return WaitPolicy(
            chunk=self.wait_chunk,
            poll_min=self.check_poll_min,
            poll_max=self.check_poll_max,
            check_read_max=self.check_read_max,
            smoke=self.smoke_seconds,
            created_404_grace=self.created_404_grace,
        )

    def retry_policy(self) -> RetryPolicy:
        """The :func:`controller.core.retry.classify` policy for decisions made by the executor."""
        return replace(
            self.api_retry,
            conflict=self.conflict_backoff,
            max_conflict_retries=self.conflict_retries,
            lease_requeue_default=self.conflict_requeue,
            capacity=self.capacity_backoff,
        )


@dataclass(frozen=True, slots=True)
class GroupWork:
    """One group's share of a plan, in plan order.  ``group`` is None for undeclared groups."""

    name: str | None
    group: DesiredGroup | None
    creates: tuple[Create, ...] = ()
    updates: tuple[Update, ...] = ()
    destroys: tuple[Destroy, ...] = ()
    noops: tuple[NoOp, ...] = ()
    transitions: tuple[Start | Stop | Restart, ...] = ()
    """Starts, stops and restarts: rolled in the update window, after the updates."""


def group_work(plan: AppPlan, desired: DesiredApp) -> list[GroupWork]:
    """The plan's actions per group: declared groups in file order, then the undeclared ones
    (managed machines of removed groups, or without readable slot metadata), by name."""
    declared = [g.name for g in desired.groups]
    extra = sorted(
        {a.group for a in plan.actions if a.group not in declared},
        key=lambda name: (name is None, name or ""),
    )
    out: list[GroupWork] = []
    for name in [*declared, *extra]:
        acts = [a for a in plan.actions if a.group == name]
        out.append(
            GroupWork(
                name=name,
                group=desired.group(name) if name is not None else None,
                creates=tuple(a for a in acts if isinstance(a, Create)),
                updates=tuple(a for a in acts if isinstance(a, Update)),
                destroys=tuple(a for a in acts if isinstance(a, Destroy)),
                noops=tuple(a for a in acts if isinstance(a, NoOp)),
                transitions=tuple(a for a in acts if isinstance(a, Start | Stop | Restart)),
            )
        )
    return out


def batch_size(group: DesiredGroup | None, machines: int) -> int:
    """Updates of ``group`` allowed at once: ``max_unavailable`` of the group's size (>= 1).

    The group's size is its desired machine count, or ``machines`` (those in the plan) when
    that is larger or the group is not declared.
    """
    if group is None:
        return 1
    return group.update.batch_size(max(group.size, machines))


def batches(items: Sequence[T], size: int) -> list[tuple[T, ...]]:
    """``items`` in consecutive chunks of ``size`` (the last one may be shorter)."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]
