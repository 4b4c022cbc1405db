"""Unreadable and hostile desired-state files in a running daemon (issue 14): each one alerts
(on its app, or on the file when it names none), blocks only that app, and never stops the loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.observability.alerts import Condition
from tests.daemon.support import app_file, daemon_world


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """An empty desired-state directory."""
    directory = tmp_path / "desired"
    directory.mkdir()
    return directory


async def test_a_dangling_symlink_blocks_its_app_and_alerts(desired: Path) -> None:
    """A desired file turned into a dangling symlink blocks the app it declared (it is not
    dropped in silence), alerts on that app, and leaves its machines alone."""
    (desired / "web.yaml").write_text(app_file("web"))
    (desired / "api.yaml").write_text(app_file("api"))
    async with daemon_world(desired, apps=("web", "api")) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        (desired / "web.yaml").unlink()
        (desired / "web.yaml").symlink_to(desired / "..data" / "web.yaml")
        await w.until(lambda: "web" in w.daemon.blocked)
        assert "web" not in w.daemon.apps
        assert "api" in w.daemon.apps
        [alert] = w.alerts.firing()
        assert alert.key.condition is Condition.BAD_DESIRED_STATE
        assert alert.key.app == "web"
        assert "dangling symbolic link" in alert.message
        assert len(w.machines("web")) == 2
        # Repair it: the app comes back and the alert resolves.
        (desired / "web.yaml").unlink()
        (desired / "web.yaml").write_text(app_file("web"))
        await w.until(lambda: "web" in w.daemon.apps)
        assert w.alerts.firing() == []


async def test_a_file_without_an_app_name_alerts_on_the_file(desired: Path) -> None:
    """A list, or a symlink loop, names no app: the alert is keyed on the file."""
    (desired / "web.yaml").write_text(app_file("web"))
    (desired / "loop.yaml").symlink_to(desired / "loop.yaml")
    async with daemon_world(desired) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        assert w.daemon.results["web"].converged
        [alert] = w.alerts.firing()
        assert alert.key.app == "loop.yaml"
        assert "too many levels of symbolic links" in alert.message


async def test_nested_yaml_dropped_into_a_running_daemon_does_not_stop_it(desired: Path) -> None:
    """The file that used to crash the daemon (exit 1, a crash loop) now blocks its app only."""
    (desired / "web.yaml").write_text(app_file("web"))
    async with daemon_world(desired, apps=("web", "deep")) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        w.write("deep.yaml", "app: deep\nx: " + "[" * 5000 + "]" * 5000 + "\n")
        await w.until(lambda: "deep" in w.daemon.blocked)
        [alert] = w.alerts.firing()
        assert alert.key.app == "deep"
        assert "nests deeper than 64 levels" in alert.message
        passes = w.daemon.passes
        w.write("web.yaml", app_file("web", regions={"ams": 3}))
        await w.until(lambda: len(w.machines("web")) == 3 and w.daemon.passes > passes)


async def test_a_new_dangling_symlink_alerts_at_once(desired: Path) -> None:
    """A dangling symlink created next to the other files (nothing else changes) is seen by
    the watcher and reloaded at once: the alert on the file fires within a poll and a
    debounce, not at the next reload made for another reason."""
    (desired / "web.yaml").write_text(app_file("web"))
    async with daemon_world(desired, interval=300) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        assert w.alerts.firing() == []
        (desired / "api.yaml").symlink_to(desired / "..data" / "api.yaml")
        taken = await w.until(lambda: bool(w.alerts.firing()), within=5)
        assert taken <= 1.0
        [alert] = w.alerts.firing()
        assert alert.key.condition is Condition.BAD_DESIRED_STATE
        assert alert.key.app == "api.yaml"
        assert "dangling symbolic link" in alert.message
        assert w.daemon.results["web"].converged, "the other app is left alone"
