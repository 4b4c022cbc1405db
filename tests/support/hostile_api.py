"""A hostile API in front of the emulator: a loopback TCP proxy that can switch modes.

``pass``: bytes forwarded both ways (the emulator answers); ``hang``: the connection is accepted
and the request read, and nothing is ever answered; ``html502``: a load balancer's HTML 502 page;
``trickle``: a valid response sent one byte every ``trickle_every`` seconds, so no single read
waits long but the response never ends.  The mode applies to connections opened after the
switch; switching cuts the connections already open (a pooled one would otherwise keep the mode
it started with).  Runs an asyncio loop in a thread;
use it as a context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Literal

Mode = Literal["pass", "hang", "html502", "trickle"]
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


class HostileProxy:
    """``with HostileProxy(upstream_port) as proxy: proxy.url; proxy.mode = "hang"``."""

    def __init__(self, upstream_port: int, *, trickle_every: float = 0.5) -> None:
        self.upstream_port = upstream_port
        self.trickle_every = trickle_every
        self._mode: Mode = "pass"
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        """Switch modes; open connections are cut, as a hung or failing upstream would leave
        them, so a client's pooled keep-alive connection meets the new mode too."""
        self._mode = mode
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._cut_connections)

    def _cut_connections(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def __enter__(self) -> HostileProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._shutdown)
        self._thread.join(10)

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        self._loop.call_later(0.2, self._loop.stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        mode = self._mode
        try:
            if mode == "pass":
                await self._forward(reader, writer)
            elif mode == "hang":
                await reader.read(65536)
                await asyncio.sleep(3600)
            elif mode == "html502":
                await reader.read(65536)
                head = (
                    b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(HTML_502)
                )
                writer.write(head + HTML_502)
                await writer.drain()
            else:
                await reader.read(65536)
                body = b"[" + b" " * 100_000 + b"]"
                response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                response += b"Content-Length: %d\r\n\r\n" % len(body) + body
                for i in range(len(response)):
                    writer.write(response[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(self.trickle_every)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()
