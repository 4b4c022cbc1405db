"""Watching the desired-state directory for changes, by polling, on the injected clock.

Every ``poll`` seconds (0.5 by default) :class:`DirWatcher` takes a snapshot of the entries the
loader reads (``*.yaml`` / ``*.yml``, not hidden, not a directory, in the directory itself):
name, size, modification time and inode, following symlinks.  When the snapshot differs from
the last one it waits ``debounce`` seconds and looks again, until two looks agree (an editor's
or ``kubectl``'s multi-step write settles), then reports the change once.

An entry the loader would report as an error is in the snapshot too, marked with a size of -1:
a dangling symlink or a symlink loop (described by ``lstat``), a FIFO or socket, a name that
vanished between the listing and the ``stat``.  So creating one triggers a reload at once, and
the reload alerts (``bad_desired_state``) instead of the entry waiting, unseen, for the next
reload made for another reason.

Size, mtime and inode can miss an edit: two same-size writes within one tick of the
filesystem's clock (a few milliseconds) leave all three equal, and the daemon would never see
the second (git calls this a "racy" entry).  So a file modified within :data:`RACY_SECONDS` of
a look is also hashed; an older file is only hashed again when its ``stat`` changed, which
costs nothing in the steady state.

Why polling and not inotify (``watchfiles``): a handful of ``stat`` calls twice a second costs
nothing; it sees Kubernetes ConfigMap updates, which swap a ``..data`` symlink and which
inotify watchers on the directory commonly miss; it works the same on every platform and
filesystem (NFS, overlayfs); it needs no dependency; and it runs on the injected clock, so
tests drive it in zero wall time.  Files referenced from desired state (``${FILE:...}``) are
not watched: send SIGHUP after changing one.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import AsyncGenerator
from pathlib import Path

from controller.clock import Clock

__all__ = ["UNREADABLE", "DirWatcher", "Snapshot", "snapshot"]

Snapshot = frozenset[tuple[str, int, int, int, str]]
"""(name, size, mtime in ns, inode, content digest) of every desired-state entry (the digest is
"" for an entry that is not a readable file); empty if the dir is gone."""

_SUFFIXES = (".yaml", ".yml")
#: Looks before a change that never settles is reported anyway (files rewritten non-stop).
_MAX_SETTLE_LOOKS = 20
#: The size recorded for an entry that cannot be read as a regular file.
UNREADABLE = -1
#: A file modified this recently (seconds) may change again within one mtime tick: hash it.
RACY_SECONDS = 2.0
#: Files larger than this are not hashed (past the loader's 1 MiB ``LoadLimits.max_bytes``).
_HASH_LIMIT = 1 << 20


def snapshot(directory: Path, previous: Snapshot = frozenset()) -> Snapshot:
    """The current state of the entries :func:`controller.loading.loader.load_dir` would read.

    A regular file's digest is taken over from ``previous`` when its size, mtime and inode are
    unchanged and it was not modified within :data:`RACY_SECONDS`; otherwise it is read and
    hashed.
    """
    entries: set[tuple[str, int, int, int, str]] = set()
    try:
        names = os.listdir(directory)
    except OSError:
        return frozenset()
    known = {(name, size, mtime, ino): digest for name, size, mtime, ino, digest in previous}
    racy_since = time.time_ns() - int(RACY_SECONDS * 1e9)
    for name in names:
        if name.startswith(".") or not name.endswith(_SUFFIXES):
            continue
        entry = _entry(directory / name)
        if entry is None:
            continue
        size, mtime, ino = entry
        digest = ""
        if size != UNREADABLE:
            digest = known.get((name, *entry), "") if mtime < racy_since else ""
            if not digest:
                digest = _digest(directory / name, size)
        entries.add((name, size, mtime, ino, digest))
    return frozenset(entries)


def _digest(path: Path, size: int) -> str:
    """A digest of the file's content ("-" when it is too large or cannot be read now)."""
    if size > _HASH_LIMIT:
        return "-"
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except OSError:
        return "-"


def _entry(path: Path) -> tuple[int, int, int] | None:
    """(size, mtime in ns, inode) of a file; size -1 for an entry the loader cannot read as
    a file (see the module docstring); ``None`` for a directory, which the loader skips."""
    try:
        st = os.stat(path)  # follows symlinks: a swapped target is a change
    except OSError:
        try:
            st = os.lstat(path)  # a dangling symlink or a loop: the link itself
        except OSError:
            return (UNREADABLE, -1, -1)  # vanished since the listing: the next look settles it
        return (UNREADABLE, st.st_mtime_ns, st.st_ino)
    if stat.S_ISDIR(st.st_mode):
        return None
    if not stat.S_ISREG(st.st_mode):
        return (UNREADABLE, st.st_mtime_ns, st.st_ino)  # a FIFO, a socket, a device
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class DirWatcher:
    """Reports settled changes of a directory's desired-state files (see the module docstring)."""

    def __init__(
        self, directory: Path, *, clock: Clock, poll: float = 0.5, debounce: float = 0.25
    ) -> None:
        if poll <= 0 or debounce < 0:
            raise ValueError("poll must be positive and debounce not negative")
        self.directory = directory
        self._clock = clock
        self.poll = poll
        self.debounce = debounce
        self._last = snapshot(directory)

    def rebase(self) -> None:
        """Take the current state as seen (after a reload made for another reason)."""
        self._last = snapshot(self.directory, self._last)

    def check(self) -> bool:
        """One look without waiting: True if the files differ from the last look (and the
        difference is now taken as seen)."""
        current = snapshot(self.directory, self._last)
        if current == self._last:
            return False
        self._last = current
        return True

    async def changes(self) -> AsyncGenerator[Snapshot, None]:
        """Yield the new snapshot after every settled change, forever."""
        while True:
            await self._clock.sleep(self.poll)
            current = snapshot(self.directory, self._last)
            if current == self._last:
                continue
            for _ in range(_MAX_SETTLE_LOOKS):  # debounce: until two looks agree
                await self._clock.sleep(self.debounce)
                settled = snapshot(self.directory, current)
                if settled == current:
                    break
                current = settled
            if current == self._last:
                continue  # it came and went (a name that vanished while it was listed)
            self._last = current
            yield current
