"""Fixtures for the emulator tests: a FakeClock-driven emulator and an in-process client.

Behaviour defaults are production-like except rate limits, which most tests turn off because
they create several machines per second of (fake) time; ``test_ratelimit.py`` turns them on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from controller.emulator import Behaviour, EmulatorState, EmulatorTransport, build_app
from controller.testing import FakeClock

TOKEN = "secret-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
IMAGE = "registry.fly.io/web:deployment-01"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour(rate_limits=False)


@pytest.fixture
def app(clock: FakeClock, behaviour: Behaviour) -> Starlette:
    return build_app(clock=clock, seed=42, behaviour=behaviour)


@pytest.fixture
def emulator(app: Starlette) -> EmulatorState:
    state: EmulatorState = app.state.emulator
    return state


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = EmulatorTransport(app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emulator", headers=AUTH
    ) as http:
        yield http


@pytest.fixture
def web(emulator: EmulatorState) -> str:
    """An app called ``web`` in org ``personal``."""
    emulator.seed_fixtures({"apps": [{"name": "web", "org_slug": "personal"}]})
    return "web"


MakeMachine = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def make_machine(client: httpx.AsyncClient, web: str) -> MakeMachine:
    """POST a create for ``web`` and return the machine JSON (asserts 200)."""

    async def make(config: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
        payload = {"config": config or {"image": IMAGE}, **body}
        response = await client.post(f"/v1/apps/{web}/machines", json=payload)
        assert response.status_code == 200, response.text
        machine: dict[str, Any] = response.json()
        return machine

    return make


@pytest.fixture
def started_machine(
    make_machine: MakeMachine, clock: FakeClock
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """Create a machine and advance the clock until it has booted."""

    async def make(config: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
        machine = await make_machine(config, **body)
        clock.advance(10)
        return machine

    return make
