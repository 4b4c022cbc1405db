"""The API client against the emulator over real loopback HTTP, every exchange spec-checked.

The emulator runs in uvicorn on a free 127.0.0.1 port (``serve_in_thread``), on the system clock,
with Fly's production behaviour except what a test turns down explicitly.  The client runs on a
``FakeClock``: its retry and pacing sleeps take no wall time, while the emulator's own timing
(boot latency, lease TTLs) stays real and is kept short per test through ``Behaviour``.

Every request the client sends and every response it receives passes through
:class:`spec_check.SpecChecker`; each test ends with ``assert_clean()`` on it, and the emulator's
request log (what the server actually received) is checked the same way.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from spec_check import SpecChecker

from controller.emulator import Behaviour, EmulatorState, build_app, serve_in_thread
from controller.flyapi import MachinesClient, RateLimits
from controller.testing import FakeClock

TOKEN = "fo1_integration-secret-token-XYZ"
ORG = "personal"


def fast_behaviour(**overrides: Any) -> Behaviour:
    """Production behaviour with the slow parts turned down (each test may turn more)."""
    base: dict[str, Any] = {
        "boot_seconds": 0.05,
        "stop_seconds": 0.05,
        "destroy_seconds": 0.05,
        "checks_pass_seconds": 0.05,
        "rate_limits": False,
    }
    base.update(overrides)
    return Behaviour(**base)


@dataclass
class Served:
    """A running emulator: its base URL, its state (for control and inspection), a checker."""

    url: str
    state: EmulatorState
    checker: SpecChecker = field(default_factory=SpecChecker)

    def control(self, method: str, path: str, json: Any = None) -> Any:
        """Call the emulator's control API synchronously (tests set up faults with it)."""
        response = httpx.request(method, f"{self.url}/_emulator{path}", json=json, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def log(self) -> list[dict[str, Any]]:
        """The emulator's request log: exactly what the server received."""
        entries: list[dict[str, Any]] = self.control("GET", "/requests")
        return entries

    def assert_spec_clean(self) -> None:
        """Every exchange so far, both sides, conformed to the (strict) OpenAPI spec."""
        self.checker.check_logged(self.log())
        self.checker.assert_clean()


@pytest.fixture
def behaviour() -> Behaviour:
    return fast_behaviour()


@pytest.fixture
def served(behaviour: Behaviour) -> Iterator[Served]:
    app = build_app(seed=11, behaviour=behaviour, token=TOKEN)
    with serve_in_thread(app) as url:
        yield Served(url=url, state=app.state.emulator)


@pytest.fixture
async def api(served: Served, fake_clock: FakeClock) -> AsyncIterator[MachinesClient]:
    """A client over real HTTP whose every exchange is validated against the spec."""

    async def check(response: httpx.Response) -> None:
        await response.aread()
        served.checker.check_exchange(response.request, response)

    http = httpx.AsyncClient(
        base_url=served.url, timeout=httpx.Timeout(10.0), event_hooks={"response": [check]}
    )
    async with http:
        yield MachinesClient(
            http,
            token=SecretStr(TOKEN),
            clock=fake_clock,
            rng=random.Random(3),
            limits=RateLimits.disabled(),
        )


@pytest.fixture
async def app_name(api: MachinesClient) -> str:
    """An app created through the client."""
    await api.create_app("acme-web", ORG)
    return "acme-web"
