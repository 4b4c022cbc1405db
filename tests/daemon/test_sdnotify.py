"""The systemd notify protocol against unix datagram sockets the tests bind."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.daemon.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket in a short temporary path; yields (socket, path)."""
    path = tmp_path / "notify.sock"
    if len(str(path)) > 100:  # sun_path is ~108 bytes
        pytest.skip("temporary path too long for a unix socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """One datagram, split into its lines."""
    return sock.recv(4096).decode().splitlines()


def test_ready_status_watchdog_stopping(notify_socket: tuple[socket.socket, str]) -> None:
    """Each call sends one datagram with the documented assignments."""
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("loaded 2 apps")
    assert received(sock) == ["READY=1", "STATUS=loaded 2 apps"]
    assert notifier.status("running: 2 app(s)\nsecond line")
    assert received(sock) == ["STATUS=running: 2 app(s) second line"]
    assert notifier.watchdog()
    assert received(sock) == ["WATCHDOG=1"]
    assert notifier.stopping("draining")
    assert received(sock) == ["STOPPING=1", "STATUS=draining"]


def test_abstract_socket() -> None:
    """``@name`` addresses the abstract namespace (a leading NUL byte)."""
    name = f"machine-reconciler-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": f"@{name}"})
        assert notifier.ready()
        assert received(sock) == ["READY=1"]
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    """No NOTIFY_SOCKET: every call is a quiet no-op."""
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert notifier.watchdog_interval is None


def test_watchdog_interval_is_half_the_timeout() -> None:
    """WATCHDOG_USEC=10 s: ping every 5 s; a WATCHDOG_PID for another process disables it."""
    mine = Notifier({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval == 5.0
    assert Notifier({"WATCHDOG_USEC": "10000000"}).watchdog_interval == 5.0
    assert Notifier({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "nonsense"}).watchdog_interval is None


def test_a_vanished_socket_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Sending to a socket that does not exist fails quietly (one warning)."""
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert caplog.text.count("cannot notify systemd") == 1
