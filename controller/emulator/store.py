"""The in-memory store: apps, machines and volumes, with the lookups every operation starts from.

Lookups raise the API's 404s, and every machine read goes through :func:`lifecycle.settle`, so
callers always see states advanced to the current clock time.  Destroyed machines are kept (they
are listed with ``include_deleted`` and can still be fetched) but refuse writes with 404.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.emulator import apierrors, lifecycle
from controller.emulator.model import App, Machine, Runtime, Volume


@dataclass
class Cursor:
    """Server-side pagination position: the next page starts after ``after_seq``."""

    app: str
    after_seq: int
    first_page_at: float


@dataclass
class Store:
    rt: Runtime
    apps: dict[str, App] = field(default_factory=dict)
    machines: dict[str, Machine] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    by_app: dict[str, list[Machine]] = field(default_factory=dict)
    """Each app's machines in creation order (an index over ``machines``)."""
    seq: int = 0

    def add_machine(self, machine: Machine) -> None:
        self.machines[machine.id] = machine
        self.by_app.setdefault(machine.app, []).append(machine)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def app(self, name: str) -> App:
        """The app, or 404."""
        app = self.apps.get(name)
        if app is None:
            raise apierrors.app_not_found(name)
        return app

    def machine(self, app: str, machine_id: str) -> Machine:
        """A machine of ``app`` (destroyed ones included), settled to now; 404 if unknown."""
        self.app(app)
        machine = self.machines.get(machine_id)
        if machine is None or machine.app != app:
            raise apierrors.machine_not_found(machine_id)
        lifecycle.settle(machine, self.rt)
        return machine

    def writable(self, app: str, machine_id: str) -> Machine:
        """A machine that accepts writes: destroyed -> 404, destroying -> 412."""
        machine = self.machine(app, machine_id)
        if machine.state == "destroyed":
            raise apierrors.machine_not_found(machine_id)
        if machine.state == "destroying":
            raise apierrors.failed_precondition("machine is being destroyed")
        return machine

    def app_machines(self, app: str) -> list[Machine]:
        """Every machine of the app in creation order, settled to now."""
        self.app(app)
        out = list(self.by_app.get(app, []))
        for machine in out:
            lifecycle.settle(machine, self.rt)
        return out

    def live_machines(self) -> list[Machine]:
        """All non-destroyed machines (for capacity and quota sums).

        Only machines with queued transitions are settled: nothing else can become destroyed.
        """
        out = []
        for machine in self.machines.values():
            if machine.steps:
                lifecycle.settle(machine, self.rt)
            if not machine.destroyed:
                out.append(machine)
        return out

    def volume(self, app: str, volume_id: str) -> Volume:
        """A volume of ``app``, or 404."""
        self.app(app)
        volume = self.volumes.get(volume_id)
        if volume is None or volume.app != app:
            raise apierrors.volume_not_found(volume_id)
        return volume

    def detach_volumes(self, machine_id: str) -> None:
        for volume in self.volumes.values():
            if volume.attached_machine_id == machine_id:
                volume.attached_machine_id = None
