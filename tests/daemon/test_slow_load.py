"""A desired file that is slow to parse does not hold up the daemon (issue 14).

The loader bounds a hostile document to 5 s of parsing; the daemon reads and parses in a
worker thread (:func:`controller.daemon.loop.in_thread`), so ``/healthz`` answers and a rollout
in flight goes on meanwhile.  The slowness is injected (a load that waits for the test to let
it go), not slept.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from controller.daemon.loop import in_thread
from controller.loading.loader import LoadResult, load_dir
from tests.daemon.support import IMAGE_V2, app_file, daemon_world

#: A load the test never lets go of ends after this long (real seconds), so a daemon that
#: parsed on its event loop fails the test instead of hanging it.
GIVE_UP = 10.0


class SlowLoad:
    """``load_dir`` that, once armed, blocks until the test releases it (a slow parse)."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()
        self.released_in_time = False

    def __call__(self, directory: Path) -> LoadResult:
        if self.armed:
            self.entered.set()
            self.released_in_time = self.release.wait(GIVE_UP)
        return load_dir(directory)


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """A directory with one app, ``web`` (two machines in ams)."""
    directory = tmp_path / "desired"
    directory.mkdir()
    (directory / "web.yaml").write_text(app_file("web"))
    return directory


async def test_healthz_and_a_rollout_go_on_while_a_file_is_parsed(desired: Path) -> None:
    """While a new file's load is stuck in the parser: /healthz answers 200, the rollout
    already under way completes, and the new app arrives once the parse ends."""
    slow = SlowLoad()
    async with daemon_world(desired, apps=("web", "api"), load=slow, offload=in_thread) as w:
        await w.until(lambda: w.daemon.passes >= 1 and w.daemon.results["web"].converged)
        w.write("web.yaml", app_file("web", image=IMAGE_V2))
        # The reload runs in a worker thread, and while it does every task waits, so the
        # virtual clock jumps from sleeper to sleeper: give it virtual time to spare.
        await w.until(lambda: IMAGE_V2 in w.images("web"), within=3600)  # the rollout is on
        slow.armed = True
        w.write("api.yaml", app_file("api"))
        await w.until(slow.entered.is_set, within=600)

        response = await w.health.get("/healthz")
        assert response.status_code == 200
        await w.until(lambda: w.images("web") == [IMAGE_V2] * 2, within=600)
        assert not slow.release.is_set()
        assert "api" not in w.daemon.apps, "the slow load has not finished"

        slow.release.set()
        await w.until(lambda: "api" in w.daemon.apps, within=600)
        assert slow.released_in_time, "the load waited for the test, not for its give-up time"
        await w.until(lambda: len(w.machines("api")) == 2, within=600)


async def test_a_file_changed_while_the_first_load_reads_is_seen_afterwards(
    desired: Path,
) -> None:
    """The file changes after the first load read it and before that load returns (the daemon
    was just started; the load runs in a worker thread): the watcher's baseline was taken
    before the read, so the change is picked up and rolled out, not taken as loaded."""
    calls = 0

    def load_then_edit(directory: Path) -> LoadResult:
        nonlocal calls
        calls += 1
        result = load_dir(directory)
        if calls == 1:  # a comment changes the size: mtimes within one clock tick can tie
            edited = app_file("web", image=IMAGE_V2) + "# edited during the first load\n"
            (directory / "web.yaml").write_text(edited)
        return result

    async with daemon_world(desired, interval=3600, load=load_then_edit) as w:
        await w.until(lambda: w.images("web") == [IMAGE_V2] * 2, within=60)
        assert calls >= 2, "the change was loaded by a second reload"
