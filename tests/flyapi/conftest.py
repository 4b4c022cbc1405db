"""Fixtures for client tests: a client factory over a MockTransport handler on a fake clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from controller.flyapi import MachinesClient, RateLimits
from controller.testing import FakeClock
from tests.flyapi.fakes import BASE, TOKEN, UpperRandom

MakeClient = Callable[..., MachinesClient]


@pytest.fixture
async def make_client(fake_clock: FakeClock) -> AsyncIterator[MakeClient]:
    """Build MachinesClients over a handler on the fake clock (pacing off unless asked)."""
    made: list[httpx.AsyncClient] = []

    def factory(
        handler: Callable[[httpx.Request], httpx.Response],
        *,
        limits: RateLimits | None = None,
        rng: random.Random | None = None,
        **kwargs: Any,
    ) -> MachinesClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url=BASE)
        made.append(http)
        return MachinesClient(
            http,
            token=SecretStr(TOKEN),
            clock=fake_clock,
            rng=rng or UpperRandom(),
            limits=limits or RateLimits.disabled(),
            **kwargs,
        )

    yield factory
    for http in made:
        await http.aclose()
