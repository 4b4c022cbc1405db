"""Fault schedules: hypothesis strategies for what goes wrong and when, and the thread that
injects them into a served emulator while the controller runs.

A schedule is a list of :class:`Fault` events, each at an offset (seconds after the run starts):

* ``status``: a burst of 500/502/503/504 on one endpoint; ``throttle``: a burst of 429 with
  ``Retry-After: 1``;
* ``drop``: the connection dropped ``before`` the request is handled or ``after`` it was
  committed (the silent success of FLY_API.md 1.3); ``commit``: handled, then answered 5xx;
* ``empty_list``: the machine list comes back empty 1-4 times in a row (DESIGN.md 3);
* ``slow``: responses delayed to within +-50 % of the client's request timeout;
* ``bump``: an outside writer updates a managed machine (now, or between our read and write);
* ``hold``: someone else holds a managed machine's lease for 1-4 s (only a free one);
* ``capacity``: a region has no room for 1-4 s, then has room again.

Every fault is bounded (a count, a duration), so once the schedule is over the API is healthy.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.chaos.harness import APP, REQUEST_TIMEOUT, Emulator

#: Endpoint patterns (regexes searched in the path) with the methods that make sense there.
ENDPOINTS: dict[str, tuple[str, ...]] = {
    r"/machines$": ("GET", "POST"),  # list, create
    r"/machines/[^/]+$": ("GET", "POST", "DELETE"),  # get, update, destroy
    r"/lease$": ("POST", "DELETE"),  # acquire/refresh, release
    r"/wait$": ("GET",),
}
REGIONS = ("iad", "ams")


@dataclass(frozen=True)
class Fault:
    """One scheduled event (see the module docstring); ``spec`` is its kind's parameters."""

    at: float
    kind: str
    spec: tuple[tuple[str, Any], ...]

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.spec)

    def __repr__(self) -> str:  # short and readable in hypothesis' falsifying example
        return f"Fault({self.at:.2f}s {self.kind} {self.params})"


def _fault(kind: str, at: float, **spec: Any) -> Fault:
    return Fault(round(at, 2), kind, tuple(sorted(spec.items())))


offsets = st.floats(min_value=0.0, max_value=4.0, allow_nan=False)


@st.composite
def endpoint(draw: st.DrawFn) -> tuple[str, str]:
    path = draw(st.sampled_from(sorted(ENDPOINTS)))
    return path, draw(st.sampled_from(ENDPOINTS[path]))


@st.composite
def faults(draw: st.DrawFn) -> Fault:
    kind = draw(
        st.sampled_from(
            [
                "status",
                "throttle",
                "drop",
                "commit",
                "empty_list",
                "slow",
                "bump",
                "hold",
                "capacity",
            ]
        )
    )
    at = draw(offsets)
    if kind in ("status", "throttle", "drop", "slow"):
        path, method = draw(endpoint())
        count = draw(st.integers(1, 3))
        if kind == "status":
            status = draw(st.sampled_from([500, 502, 503, 504]))
            return _fault(kind, at, path=path, method=method, status=status, count=count)
        if kind == "throttle":
            return _fault(kind, at, path=path, method=method, count=count)
        if kind == "drop":
            when = draw(st.sampled_from(["before", "after"]))
            return _fault(kind, at, path=path, method=method, drop=when, count=count)
        factor = draw(st.floats(0.5, 1.5))
        return _fault(
            kind, at, path=path, method=method, latency=round(factor * REQUEST_TIMEOUT, 2)
        )
    if kind == "commit":
        path = draw(st.sampled_from([r"/machines$", r"/machines/[^/]+$"]))
        status = draw(st.sampled_from([500, 503, 504]))
        return _fault(kind, at, path=path, status=status)
    if kind == "empty_list":
        return _fault(kind, at, count=draw(st.integers(1, 4)))
    if kind == "bump":
        trigger = draw(st.sampled_from(["now", "next_update"]))
        return _fault(kind, at, target=draw(st.integers(0, 7)), on=trigger)
    if kind == "hold":
        trigger = draw(st.sampled_from(["now", "next_lease"]))
        seconds = draw(st.integers(1, 4))
        return _fault(kind, at, target=draw(st.integers(0, 7)), on=trigger, seconds=seconds)
    region = draw(st.sampled_from(REGIONS))
    return _fault(kind, at, region=region, seconds=draw(st.integers(1, 4)))


#: Any number of ``empty_list`` faults, each 1-4 lists in a row: a list with no managed machine
#: is staged (one create, then a listing that must show it; DESIGN.md 3), so however often it
#: comes back empty no slot ends with two machines.
schedules = st.lists(faults(), min_size=1, max_size=6).map(
    lambda events: sorted(events, key=lambda f: f.at)
)
#: Issue 14 at the process level, run as an explicit example: the machine list comes back
#: empty three times in a row from the start (the plan's list, then both of the first confirming
#: listing), while the deploy also scales up.  Generated schedules rarely put an empty list
#: before the first listing.
EMPTY_LISTS = [_fault("empty_list", 0.0, count=3)]
#: Desired counts per region for the faulted deploy (from 2 iad + 1 ams, v1).
targets = st.fixed_dictionaries({"iad": st.integers(1, 3), "ams": st.integers(1, 2)})


def _rule(fault: Fault) -> dict[str, Any] | None:
    """The ``/_emulator/faults`` rule of a request fault (None for the other kinds)."""
    p = fault.params
    if fault.kind == "status":
        return {
            "path": p["path"],
            "method": p["method"],
            "status": p["status"],
            "count": p["count"],
        }
    if fault.kind == "throttle":
        return {
            "path": p["path"],
            "method": p["method"],
            "status": 429,
            "headers": {"Retry-After": "1"},
            "body": {"error": "rate limit exceeded"},
            "count": p["count"],
        }
    if fault.kind == "drop":
        return {"path": p["path"], "method": p["method"], "drop": p["drop"], "count": p["count"]}
    if fault.kind == "commit":
        return {"path": p["path"], "method": "POST", "status": p["status"], "commit": True}
    if fault.kind == "empty_list":
        return {
            "path": r"/machines$",
            "method": "GET",
            "status": 200,
            "body": [],
            "count": p["count"],
        }
    if fault.kind == "slow":
        return {"path": p["path"], "method": p["method"], "latency": p["latency"], "count": 1}
    return None


class Injector:
    """Injects a schedule from a background thread, in order, at its offsets.

    ``applied`` records what happened (a ``bump`` or ``hold`` finds no managed machine to aim at
    before the first create; a ``hold`` finds the lease taken), for the failure report.
    """

    def __init__(self, emulator: Emulator, schedule: list[Fault]) -> None:
        self.emulator = emulator
        self.schedule = schedule
        self.applied: list[str] = []
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._stop = threading.Event()

    @property
    def duration(self) -> float:
        """Seconds from start until the last fault has been injected and has ended."""
        ends = [f.at + float(f.params.get("seconds", 0)) for f in self.schedule]
        return max(ends, default=0.0)

    def __enter__(self) -> Injector:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def finish(self) -> None:
        """Wait for every event to be injected and to end (capacity restored)."""
        self._thread.join(self.duration + 15)
        if self.errors:
            raise self.errors[0]

    def _run(self) -> None:
        restore: list[tuple[float, str]] = []
        events = [(f.at, f) for f in self.schedule]
        try:
            for at, fault in events:
                if self._sleep_until(at):
                    return
                self._inject(fault, restore)
            for at, region in sorted(restore):
                if self._sleep_until(at):
                    return
                self._capacity(region, None)
        except BaseException as exc:  # reported by finish()
            self.errors.append(exc)

    def _sleep_until(self, offset: float) -> bool:
        """Sleep until ``offset`` after start; True when told to stop."""
        return self._stop.wait(max(0.0, self._started + offset - time.monotonic()))

    def _inject(self, fault: Fault, restore: list[tuple[float, str]]) -> None:
        p = fault.params
        rule = _rule(fault)
        if rule is not None:
            self.emulator.call("POST", "/faults", rule)
            self.applied.append(repr(fault))
            return
        if fault.kind == "capacity":
            self._capacity(p["region"], 0)
            restore.append((fault.at + p["seconds"], p["region"]))
            self.applied.append(repr(fault))
            return
        managed = [
            m for m in self.emulator.machines() if m["config"]["metadata"].get("reconciler/managed")
        ]
        if not managed:
            self.applied.append(f"{fault!r}: no managed machine yet")
            return
        target = managed[p["target"] % len(managed)]["id"]
        writer: dict[str, Any] = {"app": APP, "machine_id": target, "on": p["on"]}
        if fault.kind == "bump":
            writer["kind"] = "bump_version"
        else:
            writer |= {"kind": "hold_lease", "seconds": p["seconds"], "if_free": True}
        result = self.emulator.call("POST", "/external-writers", writer)
        self.applied.append(
            f"{fault!r} on {target}: {'skipped' if result.get('skipped') else 'ok'}"
        )

    def _capacity(self, region: str, mb: int | None) -> None:
        budget = self.emulator.call("GET", "/behaviour")["region_capacity_mb"]
        if mb is None:
            budget.pop(region, None)
        else:
            budget[region] = mb
        self.emulator.call("PATCH", "/behaviour", {"region_capacity_mb": budget})
