"""Test helpers for the planner: a model of what Fly does to the configs it stores.

:func:`fly_stored` returns the config Fly hands back for one we sent, following FLY_API.md
section 6 item 9 and the emulator's table (``controller/emulator/configs.py``): server-filled
``guest``/``restart``/``init`` defaults, ``fly_*`` metadata, Go ``omitempty`` dropping zero
values, durations re-spelt by Go's ``Duration.String()``, ``autostop`` as the old booleans, and
volume attributes added to mounts.  :func:`apply_plan` plays a plan against a list of live
machines the way Fly would.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from controller.model.actual import LiveMachine
from controller.model.desired import format_go_duration, parse_go_duration
from controller.planning.plan import AppPlan, Create, Destroy, Update, with_launch

_DURATION_KEYS = ("interval", "timeout", "grace_period")


def _respell(check: dict[str, Any]) -> None:
    for key in _DURATION_KEYS:
        if isinstance(check.get(key), str):
            check[key] = format_go_duration(parse_go_duration(check[key]))


def fly_stored(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config Fly returns after storing ``config`` (a deep copy, server fields added)."""
    out = copy.deepcopy(dict(config))
    out["guest"] = {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256, **out.get("guest", {})}
    out["restart"] = {"policy": "on-failure", **(out.get("restart") or {})}
    out.setdefault("init", {})
    metadata = out.setdefault("metadata", {})
    metadata.setdefault("fly_platform_version", "v2")
    metadata.setdefault("fly_process_group", "app")
    if out.get("auto_destroy") is False:  # Go omitempty on a plain bool
        del out["auto_destroy"]
    for check in (out.get("checks") or {}).values():
        _respell(check)
    for service in out.get("services") or []:
        for check in service.get("checks") or []:
            _respell(check)
        if service.get("autostop") in ("off", "stop"):  # responses use the old booleans
            service["autostop"] = service["autostop"] == "stop"
        for port in service.get("ports") or []:
            if port.get("force_https") is False:
                del port["force_https"]
    stop = out.get("stop_config")
    if isinstance(stop, dict) and isinstance(stop.get("timeout"), str):
        stop["timeout"] = format_go_duration(parse_go_duration(stop["timeout"]))
    for mount in out.get("mounts") or []:
        mount.setdefault("name", "data")
        mount.setdefault("encrypted", True)
        mount.setdefault("size_gb", 10)
    return out


class FakeFly:
    """Deterministic ids, versions and creation times for simulated machines."""

    def __init__(self, start: int = 1) -> None:
        self._ids: Iterator[int] = itertools.count(start)

    def next(self) -> int:
        """A fresh serial number."""
        return next(self._ids)

    def machine(
        self,
        config: Mapping[str, Any],
        region: str,
        *,
        state: str = "started",
        machine_id: str | None = None,
    ) -> LiveMachine:
        """A live machine as Fly would list it after creating it with ``config``."""
        n = self.next()
        return LiveMachine(
            id=machine_id or f"{n:014x}",
            region=region,
            state=state,
            version=f"01J{n:023d}",
            config=fly_stored(config),
            name=f"machine-{n}",
            created_at=f"2025-01-01T00:00:{n % 60:02d}.{n:06d}Z",
        )

    def apply(self, plan: AppPlan, live: Sequence[LiveMachine]) -> list[LiveMachine]:
        """Play ``plan`` against ``live`` as Fly would: the new list of machines."""
        machines = {m.id: m for m in live}
        for action in plan.actions:
            if isinstance(action, Create):
                config = with_launch(action.config, f"launch-{self.next()}")
                made = self.machine(config, action.region)
                machines[made.id] = made
            elif isinstance(action, Update):
                old = machines[action.machine_id]
                state = old.state if action.skip_launch else "started"
                machines[old.id] = LiveMachine(
                    id=old.id,
                    region=old.region,
                    state=state,
                    version=f"01J{self.next():023d}",
                    config=fly_stored(action.config),
                    name=old.name,
                    created_at=old.created_at,
                )
            elif isinstance(action, Destroy):
                del machines[action.machine_id]
        return list(machines.values())
