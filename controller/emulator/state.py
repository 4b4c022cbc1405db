"""The emulator's control object (``app.state.emulator``): world, faults, log, limits, writers.

:class:`EmulatorState` owns everything mutable and offers the operations behind the control API
(``/_emulator/...``) as plain methods, so in-process tests can seed, inject faults and inspect
without HTTP.  ``reset`` swaps in a fresh world; the routes always reach the current one through
this object.  Randomness: ids come from ``random.Random(seed)``; fault probabilities from a
second generator seeded from the same seed, so adding a fault never shifts the ids.
"""

from __future__ import annotations

import random
from typing import Any

from controller.clock import Clock, SystemClock
from controller.emulator import apierrors, leases, lifecycle, views
from controller.emulator.behaviour import Behaviour
from controller.emulator.external import ExternalWriters, ExternalWriterSpec
from controller.emulator.faults import FaultBook, FaultRule, FaultSpec
from controller.emulator.ids import IdGenerator
from controller.emulator.model import Runtime
from controller.emulator.ratelimit import RateLimiter
from controller.emulator.requestlog import RequestLog
from controller.emulator.seeding import SeedSpec, seed
from controller.emulator.store import Store


class EmulatorState:
    """All mutable emulator state plus the control operations (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        behaviour: Behaviour | None = None,
        token: str | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.token = token
        self.seed = seed
        self._build(behaviour or Behaviour())

    def _build(self, behaviour: Behaviour) -> None:
        self.rt = Runtime(
            clock=self.clock,
            ids=IdGenerator(random.Random(self.seed), self.clock),
            behaviour=behaviour,
            request_ids=IdGenerator(random.Random(f"requests:{self.seed}"), self.clock),
        )
        self.store = Store(self.rt)
        self.faults = FaultBook(random.Random(f"faults:{self.seed}"))
        self.log = RequestLog()
        self.limiter = RateLimiter(self.rt)
        self.writers = ExternalWriters()

    # ------------------------------------------------------------------ lifecycle of the world
    def reset(self, *, seed: int | None = None, behaviour: Behaviour | None = None) -> None:
        """Wipe apps, machines, volumes, faults, log, buckets and writers; optionally reseed.

        The current behaviour is kept unless one is given.
        """
        if seed is not None:
            self.seed = seed
        self._build(behaviour or self.rt.behaviour)

    @property
    def behaviour(self) -> Behaviour:
        return self.rt.behaviour

    @behaviour.setter
    def behaviour(self, value: Behaviour) -> None:
        self.rt.behaviour = value

    def patch_behaviour(self, changes: dict[str, Any]) -> Behaviour:
        """Apply a partial update (validated; raises ``pydantic.ValidationError``)."""
        self.rt.behaviour = self.rt.behaviour.patched(changes)
        return self.rt.behaviour

    # ------------------------------------------------------------------ fixtures and faults
    def seed_fixtures(self, spec: SeedSpec | dict[str, Any]) -> dict[str, Any]:
        """Insert apps/volumes/machines directly (see ``seeding.py``); returns their ids."""
        return seed(self.store, SeedSpec.model_validate(spec))

    def add_fault(self, spec: FaultSpec | dict[str, Any]) -> FaultRule:
        return self.faults.add(FaultSpec.model_validate(spec))

    def external_writer(self, spec: ExternalWriterSpec | dict[str, Any]) -> dict[str, Any]:
        return self.writers.submit(self.store, ExternalWriterSpec.model_validate(spec))

    def set_checks(self, app: str, machine_id: str, mode: str) -> None:
        """Force a machine's checks ``passing``/``failing``, or back to ``auto``."""
        if mode not in ("auto", "passing", "failing"):
            raise apierrors.bad_request("checks must be auto, passing or failing")
        self.store.machine(app, machine_id).checks_mode = mode

    # ------------------------------------------------------------------ inspection
    def machine(self, app: str, machine_id: str) -> dict[str, Any]:
        """A machine as GET returns it (settled to now)."""
        return views.machine(self.store.machine(app, machine_id), self.rt, include_lease=True)

    def machines(self, app: str, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The app's machines as the list endpoint returns them."""
        return [
            views.machine(m, self.rt, include_lease=True)
            for m in self.store.app_machines(app)
            if include_deleted or not m.destroyed
        ]

    def requests(self) -> list[dict[str, Any]]:
        """The request log (see ``requestlog.py``)."""
        return self.log.entries()

    def dump(self) -> dict[str, Any]:
        """Everything, for ``GET /_emulator/state``; leases include their nonce."""
        now = self.rt.now()
        machines = []
        for m in sorted(self.store.machines.values(), key=lambda m: m.seq):
            lifecycle.settle(m, self.rt)
            entry = {"app": m.app, **views.machine(m, self.rt)}
            live = m.live_lease(now)
            entry["lease"] = leases.envelope(live)["data"] if live else None
            entry["target_state"] = lifecycle.target_state(m)
            entry["checks_mode"] = m.checks_mode
            entry["versions"] = [v["version"] for v in views.versions(m)]
            machines.append(entry)
        return {
            "seed": self.seed,
            "clock": {"monotonic": self.clock.monotonic(), "now": self.clock.now()},
            "behaviour": self.rt.behaviour.model_dump(),
            "apps": [
                {"name": a.name, "org_slug": a.org_slug, "created_at": a.created_at}
                for a in self.store.apps.values()
            ],
            "machines": machines,
            "volumes": [views.volume(v) | {"app": v.app} for v in self.store.volumes.values()],
            "faults": [r.to_json() for r in self.faults.rules()],
            "external_writers": self.writers.to_json(),
            "request_count": len(self.log.entries()),
        }
