"""Pausing an app in the daemon: the file's ``paused: true``, ``--pause-app`` and a
``paused/<app>`` marker leave the app alone (a hand fix is not reverted), with a metric."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.cli.commands import build_parser
from controller.cli.run import settings_overrides
from controller.settings import load_daemon_settings
from tests.daemon.support import IMAGE_V1, app_file, daemon_world

HOTFIX = "registry.fly.io/web:hotfix"
PAUSED = "machine_reconciler_app_paused"


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    directory = tmp_path / "desired"
    directory.mkdir()
    return directory


async def test_a_marker_pauses_the_app_and_a_hand_fix_survives(desired: Path) -> None:
    """paused/web appears while running: the hot fix stays through passes and SIGHUP; removing
    the marker lets the next pass correct it."""
    (desired / "web.yaml").write_text(app_file("web"))
    async with daemon_world(desired, interval=10) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        assert w.metrics.value(PAUSED, app="web") == 0
        (desired / "paused").mkdir()
        (desired / "paused" / "web").write_text("alice: hot-fixing the image\n")
        [machine, _] = w.machines("web")
        w.emulator.external_writer(
            {
                "kind": "bump_version",
                "app": "web",
                "machine_id": machine["id"],
                "patch": {"image": HOTFIX},
            }
        )
        w.daemon.request_reload()
        passes = w.daemon.passes
        await w.until(lambda: w.daemon.passes >= passes + 3)  # SIGHUP and two intervals
        assert w.images("web") == sorted([HOTFIX, IMAGE_V1])
        assert w.metrics.value(PAUSED, app="web") == 1
        assert "marker" in w.daemon.paused["web"]
        assert "1 paused" in w.daemon.summary()

        (desired / "paused" / "web").unlink()
        await w.until(lambda: w.images("web") == [IMAGE_V1, IMAGE_V1], within=30)
        assert w.metrics.value(PAUSED, app="web") == 0
        assert "web" not in w.daemon.paused


async def test_pause_app_setting_leaves_the_app_alone(desired: Path) -> None:
    """--pause-app web: nothing is created for web; the other app converges."""
    (desired / "web.yaml").write_text(app_file("web"))
    (desired / "api.yaml").write_text(app_file("api"))
    async with daemon_world(desired, apps=("web", "api"), paused_apps=("web",)) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        assert w.machines("web") == []
        assert len(w.machines("api")) == 2
        assert w.metrics.value(PAUSED, app="web") == 1
        assert w.metrics.value(PAUSED, app="api") == 0
        assert w.daemon.paused == {"web": "--pause-app"}


async def test_paused_in_the_file_is_left_alone(desired: Path) -> None:
    (desired / "web.yaml").write_text(app_file("web") + "paused: true\n")
    async with daemon_world(desired) as w:
        await w.until(lambda: w.daemon.passes >= 1)
        assert w.machines("web") == []
        assert w.requests("POST") == []
        assert w.daemon.paused == {"web": "paused: true in the file"}


def test_pause_app_flag_is_repeatable_and_reaches_the_settings(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["run", str(tmp_path), "--pause-app", "web", "--pause-app", "api"]
    )
    settings = load_daemon_settings(settings_overrides(args), config_file=None)
    assert settings.paused_apps == ("web", "api")
