"""Watching the desired-state directory for changes, by polling, on the injected clock.

Every ``poll`` seconds (0.5 by default) :class:`DirWatcher` takes a snapshot of the files the
loader reads (``*.yaml`` / ``*.yml``, not hidden, in the directory itself): name, size,
modification time and inode, following symlinks.  When the snapshot differs from the last one
it waits ``debounce`` seconds and looks again, until two looks agree (an editor's or
``kubectl``'s multi-step write settles), then reports the change once.

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

__all__ = ["DirWatcher", "Snapshot", "snapshot"]

Snapshot = frozenset[tuple[str, int, int, int]]
"""(name, size, mtime in ns, inode) of every desired-state file; empty if the dir is gone."""

_SUFFIXES = (".yaml", ".yml")
#: Looks before a change that never settles is reported anyway (files rewritten non-stop).
_MAX_SETTLE_LOOKS = 20


def snapshot(directory: Path) -> Snapshot:
    """The current state of the files :func:`controller.loading.loader.load_dir` would read."""
    entries: set[tuple[str, int, int, int]] = set()
    try:
        names = os.listdir(directory)
    except OSError:
        return frozenset()
    for name in names:
        if name.startswith(".") or not name.endswith(_SUFFIXES):
            continue
        try:
            st = os.stat(directory / name)  # follows symlinks: a swapped target is a change
        except OSError:
            continue  # vanished between listdir and stat; the next look settles it
        if not stat.S_ISREG(st.st_mode):
            continue
        entries.add((name, st.st_size, st.st_mtime_ns, st.st_ino))
    return frozenset(entries)


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
            self._last = current
            yield current
