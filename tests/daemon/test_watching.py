"""The desired-state directory watcher: polling on a fake clock, debounced, ConfigMap-proof."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from controller.daemon.watching import UNREADABLE, DirWatcher, snapshot
from controller.testing import FakeClock


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    """A directory with one desired-state file."""
    (tmp_path / "web.yaml").write_text("app: web\n")
    return tmp_path


def test_snapshot_sees_only_what_the_loader_reads(directory: Path) -> None:
    """*.yaml and *.yml files count; hidden files, other suffixes and directories do not."""
    (directory / "api.yml").write_text("app: api\n")
    (directory / ".web.yaml.swp").write_text("x")
    (directory / ".hidden.yaml").write_text("x")
    (directory / "notes.txt").write_text("x")
    (directory / "sub.yaml").mkdir()
    assert sorted(name for name, *_ in snapshot(directory)) == ["api.yml", "web.yaml"]
    assert snapshot(directory / "missing") == frozenset()


def test_check_reports_a_change_once(directory: Path) -> None:
    """check(): True after a change, then False until the next one."""
    watcher = DirWatcher(directory, clock=FakeClock())
    assert not watcher.check()
    (directory / "web.yaml").write_text("app: web\n# edited, and longer\n")
    assert watcher.check()
    assert not watcher.check()
    (directory / "web.yaml").unlink()
    assert watcher.check()


async def test_a_change_is_reported_after_poll_and_debounce(
    directory: Path, fake_clock: FakeClock
) -> None:
    """A write is reported once, poll + debounce seconds of the clock later."""
    watcher = DirWatcher(directory, clock=fake_clock, poll=0.5, debounce=0.25)
    changes = watcher.changes()
    start = fake_clock.monotonic()
    (directory / "api.yaml").write_text("app: api\n")
    reported = await anext(changes)
    assert fake_clock.monotonic() - start == pytest.approx(0.75)
    assert {name for name, *_ in reported} == {"api.yaml", "web.yaml"}
    await changes.aclose()


async def test_debounce_waits_until_writes_settle(directory: Path) -> None:
    """Several writes in a row produce one report, after the last of them."""
    clock = FakeClock()
    writes = iter(["a", "ab", "abc"])

    class WritingClock(FakeClock):
        """Each debounce sleep sees one more write, like an editor saving in steps."""

        async def sleep(self, seconds: float) -> None:
            await clock.sleep(seconds)
            text = next(writes, None) if seconds < 0.5 else None
            if text is not None:
                (directory / "web.yaml").write_text(f"app: web\n# {text}\n")

        def monotonic(self) -> float:
            return clock.monotonic()

    (directory / "web.yaml").write_text("app: web\n# first\n")
    watcher = DirWatcher(directory, clock=WritingClock(), poll=0.5, debounce=0.25)
    watcher._last = frozenset()  # pretend the first look saw nothing
    changes = watcher.changes()
    reported = await anext(changes)
    assert clock.sleeps == [0.5, 0.25, 0.25, 0.25, 0.25]
    assert reported == snapshot(directory)
    await changes.aclose()


async def test_a_configmap_style_symlink_swap_is_seen(tmp_path: Path) -> None:
    """Kubernetes swaps a ..data symlink: same names, new targets -> a change."""
    first = tmp_path / "..2026_01"
    second = tmp_path / "..2026_02"
    for target, image in ((first, "v1"), (second, "v2")):
        target.mkdir()
        (target / "web.yaml").write_text(f"app: web\n# {image}\n")
    data = tmp_path / "..data"
    data.symlink_to(first.name)
    (tmp_path / "web.yaml").symlink_to("..data/web.yaml")
    watcher = DirWatcher(tmp_path, clock=FakeClock())
    temp = tmp_path / "..data_tmp"
    temp.symlink_to(second.name)
    os.replace(temp, data)  # the atomic swap kubelet does
    assert watcher.check()


async def test_changes_never_ends_on_its_own(directory: Path, fake_clock: FakeClock) -> None:
    """With nothing changing, the watcher keeps polling (bounded here by the test)."""
    watcher = DirWatcher(directory, clock=fake_clock, poll=0.5)
    with anyio.move_on_after(0.2):
        async for _ in watcher.changes():
            pytest.fail("no change was made")
    assert len(fake_clock.sleeps) > 10


def test_entries_the_loader_cannot_read_are_in_the_snapshot(directory: Path) -> None:
    """A dangling symlink, a symlink loop and a FIFO are entries the loader reports as errors:
    the snapshot has them (size -1), so creating one is a change."""
    watcher = DirWatcher(directory, clock=FakeClock())
    (directory / "gone.yaml").symlink_to(directory / "missing.yaml")
    assert watcher.check(), "a new dangling symlink is a change"
    (directory / "loop.yaml").symlink_to(directory / "loop.yaml")
    assert watcher.check(), "a new symlink loop is a change"
    os.mkfifo(directory / "pipe.yaml")
    assert watcher.check(), "a new FIFO is a change"
    sizes = {name: size for name, size, *_ in snapshot(directory)}
    assert sizes == {
        "web.yaml": 9,
        "gone.yaml": UNREADABLE,
        "loop.yaml": UNREADABLE,
        "pipe.yaml": UNREADABLE,
    }
    (directory / "missing.yaml").write_text("app: api\n")
    assert watcher.check(), "the symlink's target appearing is a change"


def test_a_name_that_vanishes_between_listing_and_stat_is_an_entry(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed, then gone before its ``stat``: recorded as unreadable, not skipped."""
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: [*listdir(path), "ghost.yaml"])
    assert ("ghost.yaml", UNREADABLE, -1, -1, "") in snapshot(directory)


async def test_an_entry_that_comes_and_goes_is_not_reported(
    directory: Path, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name seen by one look only (it vanished while being listed) settles back to the last
    snapshot: nothing changed, so nothing is reported."""
    watcher = DirWatcher(directory, clock=fake_clock, poll=0.5, debounce=0.25)
    listdir = os.listdir
    looks = 0

    def flicker(path: str | os.PathLike[str]) -> list[str]:
        nonlocal looks
        looks += 1
        return [*listdir(path), "ghost.yaml"] if looks == 1 else listdir(path)

    monkeypatch.setattr(os, "listdir", flicker)
    with anyio.move_on_after(0.2):
        async for _ in watcher.changes():
            pytest.fail("a name that came and went is no change")
    assert looks > 2, "the watcher looked again and settled"


def test_a_same_size_edit_within_one_mtime_tick_is_a_change(directory: Path) -> None:
    """Two same-size writes in one tick of the filesystem clock leave size, mtime and inode
    equal (forced here with utime): the recently modified file is hashed, so it still differs."""
    path = directory / "web.yaml"
    before = snapshot(directory)
    stat = path.stat()
    path.write_text("app: bew\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = snapshot(directory, before)
    assert [e[1:4] for e in after] == [e[1:4] for e in before], "stat alone sees no change"
    assert after != before


def test_an_old_unchanged_file_is_not_read_again(directory: Path) -> None:
    """Past the racy window a file whose stat is unchanged keeps its digest from the last look
    (it is not read): the steady state costs a stat per file."""
    path = directory / "web.yaml"
    old = path.stat().st_mtime_ns - 60 * 10**9
    os.utime(path, ns=(old, old))
    before = snapshot(directory)
    path.write_text("app: bew\n")  # same size; the old mtime put back: only a read could tell
    os.utime(path, ns=(old, old))
    assert snapshot(directory, before) == before
    assert snapshot(directory) != before, "a look without the last one reads the file"
