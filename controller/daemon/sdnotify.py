"""The systemd notify protocol (``sd_notify(3)``), implemented directly: it is one datagram.

When systemd starts a ``Type=notify`` service it sets ``NOTIFY_SOCKET`` to a unix datagram
socket (a path, or an abstract socket written with a leading ``@``) and, with
``WatchdogSec=``, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``).  The service sends newline-separated
``KEY=VALUE`` assignments:

* ``READY=1`` once it is up (we send it after the first successful load of desired state);
* ``STATUS=...`` a one-line summary shown by ``systemctl status``;
* ``WATCHDOG=1`` at least every ``WATCHDOG_USEC``, or systemd kills and restarts the service
  (the daemon sends it only while its loop makes progress, so a stuck loop gets restarted);
* ``STOPPING=1`` when it begins to shut down.

Without ``NOTIFY_SOCKET`` every method is a no-op.  Sending never blocks and never raises: a
failure is logged once.  The environment is injected, so tests bind their own socket.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]

logger = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to ``NOTIFY_SOCKET`` (see the module docstring)."""

    def __init__(self, environ: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog = _watchdog_seconds(env, os.getpid() if pid is None else pid)
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings systemd expects (half its timeout), if any."""
        return None if self._watchdog is None else self._watchdog / 2

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True if sent."""
        if self._address is None or not assignments:
            return False
        message = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8")
        try:  # a socket per message, as libsystemd does: nothing to keep or close
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logger.warning("cannot notify systemd: %s", exc.strerror or type(exc).__name__)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1`` (with a status line)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        """``STATUS=text`` (one line)."""
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1`` (with a status line)."""
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def _address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):  # abstract namespace: a leading NUL byte instead of the '@'
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    logger.warning("ignoring NOTIFY_SOCKET that is neither a path nor @abstract")
    return None


def _watchdog_seconds(env: Mapping[str, str], pid: int) -> float | None:
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None  # meant for another process (e.g. our parent)
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None
