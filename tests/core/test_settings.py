"""API settings: URL safety, token sources, defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from controller.settings import Settings, is_loopback_host

TOKEN = "fo1_settings-token-abcdef123456"


def test_defaults_follow_fly_documented_limits() -> None:
    """Defaults: public API over https, Fly's per-action and get limits, 4 attempts."""
    s = Settings(_env_file=None)
    assert s.api_url == "https://api.machines.dev"
    assert s.api_token is None
    assert (s.machine_action_rate, s.machine_action_burst) == (1.0, 3)
    assert (s.get_machine_rate, s.get_machine_burst) == (5.0, 10)
    assert (s.global_rate, s.global_burst) == (250.0, 500)
    assert s.retry_max_attempts == 4


@pytest.mark.parametrize(
    "url",
    [
        "https://api.machines.dev",
        "https://api.machines.dev/",
        "http://127.0.0.1:4280",
        "http://127.8.9.1",
        "http://localhost:4280",
        "http://[::1]:4280",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    """https anywhere and plain http to loopback are fine; a trailing slash is dropped."""
    assert Settings(_env_file=None, api_url=url).api_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://api.machines.dev",
        "http://_api.internal:4280",
        "http://10.0.0.1",
        "http://localhost.evil.com",
        "ftp://localhost",
        "api.machines.dev",
        "https://user:pw@api.machines.dev",
        "https://api.machines.dev?x=1",
    ],
)
def test_unsafe_or_malformed_urls_are_refused(url: str) -> None:
    """Plain http to a non-loopback host (token in clear), odd schemes and credentials fail."""
    with pytest.raises(ValidationError):
        Settings(_env_file=None, api_url=url)


def test_loopback_helper() -> None:
    """is_loopback_host knows names, IPv4 127/8 and IPv6 ::1."""
    assert is_loopback_host("localhost")
    assert is_loopback_host("127.0.0.2")
    assert is_loopback_host("[::1]")
    assert not is_loopback_host("192.168.1.1")
    assert not is_loopback_host("example.com")


def test_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """MACHINE_RECONCILER_API_URL is read from the environment."""
    monkeypatch.setenv("MACHINE_RECONCILER_API_URL", "http://127.0.0.1:4280")
    assert Settings(_env_file=None).api_url == "http://127.0.0.1:4280"


def test_token_from_fly_api_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """FLY_API_TOKEN is the token's environment name, and it stays secret in repr."""
    monkeypatch.setenv("FLY_API_TOKEN", TOKEN)
    s = Settings(_env_file=None)
    assert s.api_token is not None
    assert s.api_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(s)
    assert TOKEN not in str(s.model_dump())


def test_token_by_keyword() -> None:
    """Tests and the CLI may pass api_token directly."""
    s = Settings(_env_file=None, api_token=TOKEN)
    assert s.api_token is not None
    assert s.api_token.get_secret_value() == TOKEN


def test_token_file_is_read_and_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MACHINE_RECONCILER_API_TOKEN_FILE is read, whitespace and newline stripped."""
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n", encoding="utf-8")
    monkeypatch.setenv("MACHINE_RECONCILER_API_TOKEN_FILE", str(path))
    s = Settings(_env_file=None)
    assert s.api_token is not None
    assert s.api_token.get_secret_value() == TOKEN


def test_unreadable_token_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing token file fails validation naming the file, never a traceback later."""
    missing = tmp_path / "nope"
    with pytest.raises(ValidationError, match="cannot read API token file") as info:
        Settings(_env_file=None, api_token_file=missing)
    assert str(missing) in str(info.value)


def test_empty_token_file_is_refused(tmp_path: Path) -> None:
    """A whitespace-only token file is an error, not an empty token."""
    path = tmp_path / "token"
    path.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValidationError, match="is empty"):
        Settings(_env_file=None, api_token_file=path)


def test_both_token_sources_is_ambiguous(tmp_path: Path) -> None:
    """Setting the token and a token file at once is refused rather than guessed."""
    path = tmp_path / "token"
    path.write_text(TOKEN, encoding="utf-8")
    with pytest.raises(ValidationError, match="set only one"):
        Settings(_env_file=None, api_token="other-token-value", api_token_file=path)


def test_token_file_contents_never_appear_in_errors(tmp_path: Path) -> None:
    """A validation error elsewhere does not echo the token read from the file."""
    path = tmp_path / "token"
    path.write_text(TOKEN, encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, api_token_file=path, request_timeout=-1)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    "field",
    ["request_timeout", "machine_action_rate", "get_machine_rate", "global_rate"],
)
def test_rates_and_timeouts_must_be_positive(field: str) -> None:
    """Zero rates or timeouts are refused."""
    overrides: dict[str, Any] = {field: 0}
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **overrides)


# ------------------------------------------------------------------ token whitespace (issue 14)


def test_token_whitespace_around_is_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token pasted with its trailing newline works (it used to end in LocalProtocolError)."""
    monkeypatch.setenv("FLY_API_TOKEN", f"  {TOKEN}\n")
    s = Settings(_env_file=None)
    assert s.api_token is not None
    assert s.api_token.get_secret_value() == TOKEN


def test_flyv1_macaroon_form_keeps_its_one_space() -> None:
    """``fly tokens create`` prints ``FlyV1 fm2_...``: that space is part of the token."""
    s = Settings(_env_file=None, api_token=f"FlyV1 fm2_{TOKEN},fm2_more\n")
    assert s.api_token is not None
    assert s.api_token.get_secret_value() == f"FlyV1 fm2_{TOKEN},fm2_more"


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        (f"{TOKEN[:10]} {TOKEN[10:]}", "whitespace (U+0020)"),
        (f"{TOKEN[:10]}\n{TOKEN[10:]}", "whitespace (U+000A)"),
        (f"{TOKEN[:10]}\x00{TOKEN[10:]}", "a control character (U+0000)"),
    ],
)
def test_inner_whitespace_or_control_characters_are_refused(token: str, kind: str) -> None:
    """Refused at start-up with the reason, and the token is never shown, even in str(exc)."""
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, api_token=token)
    assert f"FLY_API_TOKEN holds {kind} inside the token" in str(info.value)
    assert TOKEN[:10] not in str(info.value)
    assert TOKEN[10:] not in str(info.value)


def test_token_file_with_inner_newline_is_refused(tmp_path: Path) -> None:
    """Two lines in a token file name the file, not the token."""
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n{TOKEN}\n")
    with pytest.raises(ValidationError, match=r"token file .* holds whitespace") as info:
        Settings(_env_file=None, api_token_file=path)
    assert TOKEN not in str(info.value)


async def test_settings_defaults_executor_defaults_and_policies_agree() -> None:
    """One source for every default: the settings model, ``ExecutorSettings()`` and the
    policies built from either (the client's and the executor's) are the same numbers."""
    import random

    from pydantic import SecretStr

    from controller.core import defaults as d
    from controller.core.retry import RetryPolicy
    from controller.execution.rollout import ExecutorSettings
    from controller.flyapi import MachinesClient
    from controller.settings import DaemonSettings
    from controller.testing import FakeClock

    daemon = DaemonSettings(_env_file=None, api_token=SecretStr(TOKEN))
    plain = Settings(_env_file=None)
    assert daemon.retry_policy() == plain.retry_policy() == RetryPolicy()
    assert RetryPolicy().transient.minimum == d.RETRY_MIN_DELAY
    assert ExecutorSettings.from_settings(daemon) == ExecutorSettings()
    assert ExecutorSettings.from_settings(plain) == ExecutorSettings()
    assert (
        ExecutorSettings().retry_policy() == ExecutorSettings.from_settings(daemon).retry_policy()
    )
    assert ExecutorSettings().api_retry == RetryPolicy()
    client = MachinesClient.from_settings(daemon, clock=FakeClock(), rng=random.Random(0))
    await client.aclose()
    assert client.retry_policy == daemon.retry_policy() == RetryPolicy()


async def test_settings_flow_into_the_executor_and_client_policies() -> None:
    """Changed settings reach both policies; a command-line ``lease_wait`` wins."""
    import random

    from pydantic import SecretStr

    from controller.execution.rollout import ExecutorSettings
    from controller.flyapi import MachinesClient
    from controller.settings import DaemonSettings
    from controller.testing import FakeClock

    daemon = DaemonSettings(
        _env_file=None,
        api_token=SecretStr(TOKEN),
        lease_wait=7,
        max_in_flight=9,
        retry_max_attempts=2,
        retry_base_delay=0.5,
        retry_max_delay=8,
        retry_max_retry_after=20,
    )
    ex = ExecutorSettings.from_settings(daemon)
    assert (ex.lease_wait, ex.max_in_flight) == (7, 9)
    assert ex.lease_policy().wait == 7
    policy = ex.retry_policy()
    assert (policy.max_attempts, policy.max_retry_after) == (2, 20)
    assert (policy.transient.base, policy.transient.cap) == (0.5, 8)
    assert policy.max_conflict_retries == ex.conflict_retries  # the executor's own numbers
    assert ExecutorSettings.from_settings(daemon, lease_wait=0).lease_wait == 0
    client = MachinesClient.from_settings(daemon, clock=FakeClock(), rng=random.Random(0))
    assert client.retry_policy == daemon.retry_policy()
    await client.aclose()
    assert client.retry_policy.transient == policy.transient
