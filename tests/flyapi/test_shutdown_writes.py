"""Shutdown re-checked after every wait (issue 14): after SIGTERM a create that was waiting in
the client's rate limiter used to go out a second later.  Now a write not yet sent when
shutdown begins is not sent at all; lease refreshes and releases still go out."""

from __future__ import annotations

import random

import anyio
import httpx
import pytest
from pydantic import SecretStr

from controller.core.errors import ShuttingDown
from controller.flyapi import MachinesClient, RateLimits
from controller.testing import FakeClock
from tests.flyapi.fakes import BASE, TOKEN, Script, lease_json, machine_json

ONE_PER_SECOND = RateLimits(action_rate=1.0, action_burst=1)


def _client(script: Script, clock: FakeClock) -> tuple[MachinesClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(script), base_url=BASE)
    client = MachinesClient(
        http, token=SecretStr(TOKEN), clock=clock, rng=random.Random(0), limits=ONE_PER_SECOND
    )
    return client, http


async def test_a_create_waiting_in_the_rate_limiter_is_not_sent_after_stop() -> None:
    """The second create waits a second for its token; shutdown begins meanwhile: not sent."""
    clock = FakeClock()
    script = Script(default=(200, machine_json()))
    client, http = _client(script, clock)
    outcome: list[BaseException] = []

    async def second_create() -> None:
        try:
            await client.create_machine("acme", config={"image": "nginx"}, region="ams")
        except ShuttingDown as exc:
            outcome.append(exc)

    async with http:
        await client.create_machine("acme", config={"image": "nginx"}, region="ams")
        async with anyio.create_task_group() as tg:
            tg.start_soon(second_create)
            for _ in range(5):  # let it reach the limiter's wait
                await anyio.lowlevel.checkpoint()
            assert len(script.requests) == 1
            client.stop_writes()
    assert len(script.requests) == 1, "the waiting create never went out"
    [error] = outcome
    assert "not sent: shutdown began" in str(error)
    assert clock.monotonic() - 1_000.0 >= 0.9, "it did wait for the limiter first"


async def test_reads_and_lease_refresh_and_release_still_go_out_after_stop() -> None:
    """Operations in flight can finish and give their leases back; new writes are refused."""
    clock = FakeClock()
    script = Script(default=(200, lease_json()))
    client, http = _client(script, clock)
    async with http:
        client.stop_writes()
        await client.refresh_lease("acme", "3d8d413b29d089", nonce="5c35f65c9f95", ttl=15)
        await client.release_lease("acme", "3d8d413b29d089", nonce="5c35f65c9f95")
        with pytest.raises(ShuttingDown):
            await client.acquire_lease("acme", "3d8d413b29d089", ttl=15)
        with pytest.raises(ShuttingDown):
            await client.destroy_machine("acme", "3d8d413b29d089")
    assert [r.method for r in script.requests] == ["POST", "DELETE"]
