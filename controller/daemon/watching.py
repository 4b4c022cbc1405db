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

Why polling and not inotify (``watchfiles``): a handful of ``stat`` calls twice a second costs
nothing; it sees Kubernetes ConfigMap updates, which swap a ``..data`` symlink and which
inotify watchers on the directory commonly miss; it works the same on every platform and
filesystem (NFS, overlayfs); it needs no dependency; and it runs on the injected clock, so
tests drive it in zero wall time.  Files referenced from desired state (``${FILE:...}``) are
not watched: send SIGHUP after changing one.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncGenerator
from pathlib import Path

from controller.clock import Clock

__all__ = ["UNREADABLE", "DirWatcher", "Snapshot", "snapshot"]

Snapshot = frozenset[tuple[str, int, int, int]]
"""(name, size, mtime in ns, inode) of every desired-state entry; empty if the dir is gone."""

_SUFFIXES = (".yaml", ".yml")
#: Looks before a change that never settles is reported anyway (files rewritten non-stop).
_MAX_SETTLE_LOOKS = 20
#: The size recorded for an entry that cannot be read as a regular file.
UNREADABLE = -1


def snapshot(directory: Path) -> Snapshot:
    """The current state of the entries :func:`controller.loading.loader.load_dir` would read."""
    entries: set[tuple[str, int, int, int]] = set()
    try:
        names = os.listdir(directory)
    except OSError:
        return frozenset()
    for name in names:
        if name.startswith(".") or not name.endswith(_SUFFIXES):
            continue
        entry = _entry(directory / name)
        if entry is not None:
            entries.add((name, *entry))
    return frozenset(entries)


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
        self._last = snapshot(self.directory)

    def check(self) -> bool:
        """One look without waiting: True if the files differ from the last look (and the
        difference is now taken as seen)."""
        current = snapshot(self.directory)
        if current == self._last:
            return False
        self._last = current
        return True

    async def changes(self) -> AsyncGenerator[Snapshot, None]:
        """Yield the new snapshot after every settled change, forever."""
        while True:
            await self._clock.sleep(self.poll)
            current = snapshot(self.directory)
            if current == self._last:
                continue
            for _ in range(_MAX_SETTLE_LOOKS):  # debounce: until two looks agree
                await self._clock.sleep(self.debounce)
                settled = snapshot(self.directory)
                if settled == current:
                    break
                current = settled
            if current == self._last:
                continue  # it came and went (a name that vanished while it was listed)
            self._last = current
            yield current
