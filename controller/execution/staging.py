"""Staged creates: a plan made from a machine list with no managed machine is applied one
create first, and the rest only once a new listing shows that machine (DESIGN.md 3).

Why: Fly has answered the list with ``[]`` for apps that had machines (FLY_API.md 1.1).  Such
a list looks exactly like a new app, and a one-shot ``apply`` (or a daemon that lost its
count) has nothing to compare it with; planning from it creates a duplicate for every slot.
Which plans are staged, and how a confirming listing is read, is pure
(:mod:`controller.planning.staging`); this module does the I/O:

1. **Canary.**  The plan's first create runs alone.  As soon as Fly has answered it (the first
   event of that create naming a machine id), step 2 starts, while the canary goes on booting
   and proving healthy.  A create that ends without a machine (capacity, quota, an error)
   keeps its result and the next create is tried as the canary; what it ended with holds the
   next ones back as within one run (a region without capacity, the org quota, a fatal error).
2. **Confirm.**  List again, all machines and ``reconciler/managed=true``, up to
   ``confirm_listings`` times (``confirm_delay``, doubling, between them: lists are eventually
   consistent), until one shows the canary.
3. **Not listed:** the list cannot be trusted to say which slots are free.  No other create
   is sent; each ends ``list_inconsistent`` ("machine list inconsistent: created X, not
   listed"), and once the canary has finished it is destroyed under its lease (it may
   duplicate a machine the list hides).  **Listed:** the other creates whose slot is still free
   run (alongside the canary), those whose slot a listed machine holds end ``list_inconsistent``
   (the first list left that machine out; the next pass plans from a full list), and when a
   listed machine holds the canary's own slot the canary is destroyed once it has finished.
   So a wrong list costs at most one transient machine per app and pass, gone at its end.
   Updates or destroys the new listing would call for are not done: they were not in the
   plan that was shown and confirmed.

A new app pays two list calls, and nothing in time when the canary is its only create; with
more creates, the others wait for the canary's create call and one listing, which Fly's create
pacing (1/s, burst 3) mostly hides (measured: none for 6 machines, DESIGN.md 3).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import anyio
import anyio.abc

from controller.core.errors import FlyAPIError
from controller.core.retry import is_fatal
from controller.execution.creating import Shared
from controller.execution.executor import Executor, OnEvent
from controller.execution.listing import list_live
from controller.execution.outcomes import AppResult, Event, MachineResult, Outcome, one_line
from controller.model.desired import DesiredApp
from controller.planning.plan import Action, AppPlan, Create, Destroy
from controller.planning.staging import Confirmation, confirm

__all__ = ["execute_staged"]

logger = logging.getLogger(__name__)


async def execute_staged(
    app_plan: AppPlan, desired: DesiredApp, executor: Executor, *, relisted: bool = False
) -> AppResult:
    """Apply a staged plan (:func:`controller.planning.staging.staged`; see the module
    docstring): one :class:`AppResult` for ``app_plan``, a result per create in plan order,
    then the canary's destroy when there was one."""
    return await _Staged(app_plan, desired, executor, relisted).run()


@dataclass
class _Canary:
    create: Create
    machine_id: str
    done: anyio.Event


@dataclass
class _Staged:
    plan: AppPlan
    desired: DesiredApp
    executor: Executor
    relisted: bool
    results: dict[str, MachineResult] = field(default_factory=dict)
    """Per slot of a planned create, how it ended."""
    extra: list[MachineResult] = field(default_factory=list)
    """The canary's destroy, if any."""

    def __post_init__(self) -> None:
        self.shared = Shared.new(self.executor.client, self.plan.app)

    async def run(self) -> AppResult:
        async with anyio.create_task_group() as tg:
            canary = await self._canary(tg)
            if canary is not None:
                await self._confirmed(tg, canary)
        ordered = [self.results[c.slot] for c in self.plan.creates if c.slot in self.results]
        return AppResult(
            app=self.plan.app,
            results=(*ordered, *self.extra),
            plan=self.plan,
            relisted=self.relisted,
        )

    # ------------------------------------------------------------------ the steps

    async def _canary(self, tg: anyio.abc.TaskGroup) -> _Canary | None:
        """Start creates one at a time until one has made a machine (None: none did)."""
        logger.info(
            "%s: the machine list showed no managed machine: creating one machine first, "
            "then listing again before creating more (DESIGN.md 3)",
            self.plan.app,
        )
        for create in self.plan.creates:
            canary = await self._try(tg, create)
            if canary is not None:
                return canary
        return None

    async def _try(self, tg: anyio.abc.TaskGroup, create: Create) -> _Canary | None:
        """Start ``create``; once Fly answered it, the canary, or None when it ended without
        a machine (its result is kept)."""
        answered = anyio.Event()
        done = anyio.Event()
        made: list[str] = []

        def watch(event: Event) -> None:
            if event.slot == create.slot and event.machine_id and not made:
                made.append(event.machine_id)
                answered.set()

        async def part() -> None:
            try:
                await self._part((create,), watch=watch)
            finally:
                done.set()
                answered.set()

        tg.start_soon(part)
        await answered.wait()
        return _Canary(create, made[0], done) if made else None

    async def _confirmed(self, tg: anyio.abc.TaskGroup, canary: _Canary) -> None:
        """List again; create the rest, or nothing more (see the module docstring)."""
        waiting = [c for c in self.plan.creates if c.slot != canary.create.slot]
        try:
            seen = await self._confirming_listing(canary)
        except FlyAPIError as exc:
            for create in waiting:
                if create.slot not in self.results:
                    self._end(
                        create,
                        Outcome.ERROR,
                        "not created: listing the machines again to confirm the first create "
                        f"failed: {exc.message or exc.error_class}",
                        exc,
                    )
            return
        if not seen.listed:
            logger.warning(
                "%s: machine list inconsistent: created %s (%s), not listed after %d listings; "
                "creating nothing more and destroying it",
                self.plan.app,
                canary.machine_id,
                canary.create.slot,
                self.executor.settings.confirm_listings,
            )
            for create in waiting:
                if create.slot not in self.results:
                    self._end(
                        create,
                        Outcome.LIST_INCONSISTENT,
                        f"not created: machine list inconsistent: created {canary.machine_id} "
                        f"for {canary.create.slot}, not listed",
                    )
            await self._destroy_canary(
                canary,
                Destroy(
                    canary.machine_id,
                    canary.create.slot,
                    canary.create.group,
                    canary.create.region,
                    "not listed after it was created: it may duplicate a machine the list hides",
                ),
            )
            return
        for taken in seen.taken:
            self._end(
                taken.create,
                Outcome.LIST_INCONSISTENT,
                f"not created: machine list inconsistent: {taken.machine_id} holds "
                f"{taken.create.slot} but the first listing showed no managed machine; "
                "the next pass plans from the full list",
            )
        if seen.rest:
            tg.start_soon(self._part, seen.rest)
        if seen.duplicate is not None:
            logger.warning(
                "%s: machine list inconsistent: the first listing showed no managed machine, "
                "the next one %d; destroying %s, a duplicate of %s",
                self.plan.app,
                seen.managed,
                canary.machine_id,
                canary.create.slot,
            )
            await self._destroy_canary(canary, seen.duplicate)

    async def _confirming_listing(self, canary: _Canary) -> Confirmation:
        """Up to ``confirm_listings`` listings (all + managed), until one shows the canary."""
        settings = self.executor.settings
        seen = Confirmation(listed=False)
        for attempt in range(settings.confirm_listings):
            if attempt:
                await self.executor.clock.sleep(settings.confirm_delay * 2 ** (attempt - 1))
            live = await list_live(self.executor.client, self.plan.app, confirm_managed=True)
            settled = [slot for slot in self.results if slot != canary.create.slot]
            seen = confirm(self.plan, canary.create, canary.machine_id, live, settled=settled)
            if seen.listed:
                return seen
        return seen

    async def _destroy_canary(self, canary: _Canary, destroy: Destroy) -> None:
        """Destroy the canary once its create has finished (and let go of its lease).

        Only a fatal error of an earlier part holds the destroy back: a canary that did not
        become healthy halts its group's rollout, not the removal of that very machine."""
        await canary.done.wait()
        prior = tuple(r for r in self.results.values() if r.fatal)
        result = await self.executor.execute(
            replace(self.plan, actions=(destroy,)), self.desired, prior=prior
        )
        self.extra.extend(result.results)

    # ------------------------------------------------------------------ helpers

    async def _part(self, creates: Sequence[Action], *, watch: OnEvent | None = None) -> None:
        """Run ``creates`` through the executor, with what earlier parts ended with."""
        prior = tuple(self.results.values())
        result = await self.executor.execute(
            replace(self.plan, actions=tuple(creates)),
            self.desired,
            prior=prior,
            watch=watch,
            shared=self.shared,
        )
        for one in result.results:
            if one.slot is not None:
                self.results[one.slot] = one

    def _end(
        self, create: Create, outcome: Outcome, message: str, exc: FlyAPIError | None = None
    ) -> None:
        """Record (and emit) the end of a create that is not sent."""
        result = MachineResult(
            app=self.plan.app,
            machine_id=None,
            slot=create.slot,
            group=create.group,
            region=create.region,
            action="create",
            outcome=outcome,
            error_class=exc.error_class if exc is not None else None,
            request_id=exc.request_id if exc is not None else None,
            message=one_line(message),
            fatal=exc is not None and is_fatal(exc),
        )
        self.results[create.slot] = result
        self.executor.emit(result)
