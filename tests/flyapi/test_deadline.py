"""A total deadline on every request, against a real loopback server that trickles its body.

Issue 14: httpx's timeouts bound each read, so an API that sends its headers and then one body
byte per second kept ``plan`` and ``apply`` running past 240 s with a 3 s request timeout.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import SecretStr

from controller.core.errors import RequestTimeout
from controller.core.retry import Backoff, RetryPolicy
from controller.flyapi import MachinesClient, RateLimits
from controller.testing import FakeClock

TOKEN = "fo1_deadline-token-0123456789"
READ_TIMEOUT = 0.3
CONNECT_TIMEOUT = 0.1
#: One byte this often: always well inside the read timeout, so only a total deadline stops it.
TRICKLE_EVERY = 0.05
#: The server gives up after this many bytes (keeps a broken client from hanging the suite).
TRICKLE_BYTES = 400


@dataclass
class Trickler:
    """A loopback HTTP server: full headers at once, then the body one byte at a time."""

    url: str = ""
    connections: int = 0
    methods: list[str] = field(default_factory=list)
    bytes_sent: int = 0


async def _serve(
    trickler: Trickler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    trickler.connections += 1
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        trickler.methods.append(head.split(b" ", 1)[0].decode())
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {TRICKLE_BYTES}\r\n\r\n".encode()
        )
        for _ in range(TRICKLE_BYTES):
            await asyncio.sleep(TRICKLE_EVERY)
            writer.write(b" ")
            await writer.drain()
            trickler.bytes_sent += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def trickler() -> AsyncIterator[Trickler]:
    state = Trickler()
    server = await asyncio.start_server(lambda r, w: _serve(state, r, w), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    async with server:
        yield state
        server.close()


@pytest.fixture
async def client(trickler: Trickler, fake_clock: FakeClock) -> AsyncIterator[MachinesClient]:
    http = httpx.AsyncClient(
        base_url=trickler.url, timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    )
    async with http:
        yield MachinesClient(
            http,
            token=SecretStr(TOKEN),
            clock=fake_clock,  # backoff sleeps take no wall time; the deadline is real time
            rng=random.Random(0),
            limits=RateLimits.disabled(),
            retry=RetryPolicy(max_attempts=2, transient=Backoff(base=1.0, cap=1.0, minimum=1.0)),
        )


async def test_a_trickled_body_ends_at_the_total_deadline_and_is_retried(
    client: MachinesClient, trickler: Trickler
) -> None:
    """An idempotent read times out at read + connect timeout and is retried like a timeout."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout) as caught:
        await client.get_machine("app", "m1")
    elapsed = loop.time() - started
    deadline = READ_TIMEOUT + CONNECT_TIMEOUT
    assert trickler.connections == 2, "retried once, like any timeout of an idempotent call"
    assert 2 * deadline <= elapsed < 2 * deadline + 1.0
    assert trickler.bytes_sent < TRICKLE_BYTES / 2, "cut off long before the body ended"
    assert "request deadline" in str(caught.value)
    assert caught.value.status is None


async def test_a_create_is_not_repeated_after_the_deadline(
    client: MachinesClient, trickler: Trickler
) -> None:
    """A create may have happened: the timeout surfaces after one attempt (the executor
    re-lists by launch tag before trying again)."""
    with pytest.raises(RequestTimeout):
        await client.create_machine("app", config={"image": "nginx"}, region="ams")
    assert trickler.methods == ["POST"]


def test_deadline_is_read_plus_connect_timeout(fake_clock: FakeClock) -> None:
    """The deadline follows the per-request timeout (``/wait`` long-polls get theirs)."""
    http = httpx.AsyncClient(
        base_url="https://api.machines.dev", timeout=httpx.Timeout(30, connect=10)
    )
    client = MachinesClient(http, token=SecretStr(TOKEN), clock=fake_clock, rng=random.Random(0))
    exchange = client._exchange
    assert exchange.deadline() == 40.0
    assert exchange.deadline(75.0) == 85.0
