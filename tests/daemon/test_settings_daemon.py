"""Daemon settings: defaults, precedence CLI > env > TOML > defaults, and one-line errors."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from controller.cli.run import add_run_parser, cmd_run, settings_overrides
from controller.core.errors import ConfigError
from controller.settings import (
    CONFIG_ENV,
    DaemonSettings,
    Settings,
    load_daemon_settings,
    parse_bind,
)

TOKEN = "fo1_daemon-settings-token-abcdef"
WEBHOOK = "https://hooks.slack.example/services/T000/B000/secret-part-xyz"


def toml(tmp_path: Path, text: str) -> Path:
    """Write a config file."""
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    """Every daemon setting's default (the README table)."""
    s = DaemonSettings(_env_file=None)
    assert s.desired_dir == Path("desired_state")
    assert (s.interval, s.interval_jitter, s.jitter_seconds) == (60.0, 0.1, 6.0)
    assert (s.health_bind, s.health_host, s.health_port) == ("127.0.0.1:9440", "127.0.0.1", 9440)
    assert (s.shard_index, s.shard_count) == (0, 1)
    assert (s.grace_period, s.lease_wait) == (30.0, 60.0)
    assert (s.max_in_flight, s.max_concurrent_apps, s.watch_interval) == (512, 16, 0.5)
    assert (s.alert_threshold, s.alert_webhook_url) == (3, None)
    assert (s.alert_renotify_interval, s.alert_webhook_timeout) == (14_400.0, 5.0)
    assert (s.log_format, s.log_level) == ("auto", "INFO")
    assert s.api_url == Settings(_env_file=None).api_url, "the API settings are inherited"


def test_precedence_cli_over_env_over_toml_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same setting from four sources: each source wins over the ones after it."""
    config = toml(tmp_path, "interval = 5\ngrace_period = 11\nlog_format = 'json'\n")
    monkeypatch.setenv("MACHINE_RECONCILER_INTERVAL", "7")
    monkeypatch.setenv("MACHINE_RECONCILER_GRACE_PERIOD", "12")
    s = load_daemon_settings({"interval": "9", "lease_wait": None}, config_file=config)
    assert s.interval == 9.0, "CLI beats env"
    assert s.grace_period == 12.0, "env beats TOML"
    assert s.log_format == "json", "TOML beats defaults"
    assert s.lease_wait == 60.0, "a flag not given (None) does not count"
    monkeypatch.delenv("MACHINE_RECONCILER_INTERVAL")
    assert load_daemon_settings({}, config_file=config).interval == 5.0
    assert load_daemon_settings({}).interval == 60.0


def test_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MACHINE_RECONCILER_CONFIG names the file when --config is not given."""
    monkeypatch.setenv(CONFIG_ENV, str(toml(tmp_path, "shard_count = 4\nshard_index = 3\n")))
    s = load_daemon_settings({})
    assert (s.shard_index, s.shard_count) == (3, 4)


def test_relative_paths_in_the_config_file_are_relative_to_it(tmp_path: Path) -> None:
    """desired_dir and api_token_file in TOML resolve against the file's directory."""
    (tmp_path / "token").write_text(TOKEN)
    config = toml(tmp_path, 'desired_dir = "apps"\napi_token_file = "token"\n')
    s = load_daemon_settings({}, config_file=config)
    assert s.desired_dir == tmp_path / "apps"
    assert s.api_token is not None
    assert s.api_token.get_secret_value() == TOKEN


def test_the_api_settings_come_from_the_config_file_too(tmp_path: Path) -> None:
    """The inherited API settings can live in the file (below the environment)."""
    config = toml(tmp_path, 'api_url = "http://127.0.0.1:4280"\nglobal_rate = 5\n')
    s = load_daemon_settings({}, config_file=config)
    assert (s.api_url, s.global_rate) == ("http://127.0.0.1:4280", 5.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("intreval = 5\n", "unknown setting(s): intreval"),
        ('api_token = "abc"\n', "do not put the API token in a config file"),
        ('FLY_API_TOKEN = "abc"\n', "do not put the API token in a config file"),
        ("interval = \n", "invalid TOML"),
        ("interval = -1\n", "invalid setting interval: Input should be greater than or equal"),
    ],
)
def test_bad_config_files_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    """Unknown keys, a token in the file, bad TOML and bad values: one line naming it."""
    with pytest.raises(ConfigError) as info:
        load_daemon_settings({}, config_file=toml(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    """--config pointing nowhere is an error, not a silent default."""
    with pytest.raises(ConfigError, match="config file not found"):
        load_daemon_settings({}, config_file=tmp_path / "missing.toml")


def test_invalid_values_are_one_line_naming_each_setting() -> None:
    """Several bad values: one line naming every setting; a secret URL is never echoed."""
    with pytest.raises(ConfigError) as info:
        load_daemon_settings(
            {
                "interval": "abc",
                "health_bind": "nowhere",
                "alert_webhook_url": WEBHOOK.replace("https", "ftp"),
            }
        )
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("invalid setting interval: ")
    assert "health_bind: expected HOST:PORT" in text
    assert "alert_webhook_url: alert_webhook_url must be an http(s) URL" in text
    assert "secret-part-xyz" not in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9440", ("127.0.0.1", 9440)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9440", ("::1", 9440)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_bind_addresses(value: str, expected: tuple[str, int]) -> None:
    """HOST:PORT with IPv6 in brackets."""
    assert parse_bind(value) == expected


@pytest.mark.parametrize("value", ["9440", ":9440", "::1:9440", "host:port", "host:70000"])
def test_bad_bind_addresses(value: str) -> None:
    """Malformed binds are refused."""
    with pytest.raises(ValueError, match=r"."):
        parse_bind(value)


# ------------------------------------------------------------------------------ cmd_run


def run_args(*argv: str) -> argparse.Namespace:
    """Parse ``run ARGV`` with the real subparser."""
    parser = argparse.ArgumentParser(prog="machine-reconciler")
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command")
    add_run_parser(sub)
    return parser.parse_args(["run", *argv])


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """An (empty) desired-state directory."""
    directory = tmp_path / "desired"
    directory.mkdir()
    return directory


def test_flags_map_to_settings(desired: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run flag reaches its setting."""
    args = run_args(
        str(desired),
        "--interval=15",
        "--health-bind=127.0.0.1:0",
        "--shard-index=1",
        "--shard-count=3",
        f"--alert-webhook={WEBHOOK}",
        "--grace-period=9",
        "--lease-wait=4",
        "--log-format=text",
        "--log-level=DEBUG",
    )
    s = load_daemon_settings(settings_overrides(args))
    assert s.desired_dir == desired
    assert (s.interval, s.health_port, s.shard_index, s.shard_count) == (15.0, 0, 1, 3)
    assert s.alert_webhook_url is not None
    assert s.alert_webhook_url.get_secret_value() == WEBHOOK
    assert WEBHOOK not in repr(s)
    assert (s.grace_period, s.lease_wait, s.log_format, s.log_level) == (9.0, 4.0, "text", "DEBUG")


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--interval", "abc"], {}, "invalid setting interval"),
        (["--interval", "0"], {}, "invalid setting interval"),
        (["--shard-index", "2", "--shard-count", "2"], {}, "must be below shard_count"),
        (["--health-bind", "nowhere"], {}, "invalid setting health_bind"),
        (["--grace-period", "-1"], {}, "invalid setting grace_period"),
        ([], {"FLY_API_TOKEN": ""}, "no Fly API token"),
        ([], {"MACHINE_RECONCILER_LOG_FORMAT": "xml"}, "invalid setting log_format"),
        (["--config", "/nonexistent/config.toml"], {}, "config file not found"),
    ],
)
def test_cmd_run_reports_bad_settings_in_one_line(
    desired: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    """Invalid settings: exactly one line on stderr naming the problem, exit 1."""
    monkeypatch.setenv("FLY_API_TOKEN", TOKEN)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cmd_run(run_args(str(desired), "--health-bind=127.0.0.1:0", *argv)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("machine-reconciler: error: ")
    assert message in err
    assert TOKEN not in err


def test_cmd_run_needs_the_desired_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing desired-state directory is a start-up error."""
    monkeypatch.setenv("FLY_API_TOKEN", TOKEN)
    assert cmd_run(run_args(str(tmp_path / "nope"))) == 1
    assert "desired-state directory not found" in capsys.readouterr().err


def test_cmd_run_reports_a_busy_health_port(
    desired: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The health port already in use: one line, exit 1, before anything starts."""
    monkeypatch.setenv("FLY_API_TOKEN", TOKEN)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert cmd_run(run_args(str(desired), f"--health-bind=127.0.0.1:{port}")) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err


def test_watching_can_be_turned_off_by_env_or_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """watch is on by default; MACHINE_RECONCILER_WATCH=false or --no-watch turn it off."""
    assert load_daemon_settings({}).watch is True
    monkeypatch.setenv("MACHINE_RECONCILER_WATCH", "false")
    assert load_daemon_settings({}).watch is False
    monkeypatch.delenv("MACHINE_RECONCILER_WATCH")
    parser = argparse.ArgumentParser()
    add_run_parser(parser.add_subparsers(dest="command"))
    assert settings_overrides(parser.parse_args(["run", "--no-watch"]))["watch"] is False
    assert "watch" not in settings_overrides(parser.parse_args(["run"]))
