"""Hostile desired-state files through the real CLI (issue 14): one line each, no traceback,
only the affected app blocked, and ``apply`` never reports "converged" past a bad file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import EXAMPLES, TOKEN, control, copy_examples, run_cli

pytestmark = pytest.mark.e2e

NOWHERE = "http://127.0.0.1:9"

NESTED = "app: acme-nested\nx: " + "[" * 4000 + "]" * 4000 + "\n"
BOMB = "app: acme-bomb\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """The shipped examples plus a deeply nested file, an alias bomb and a symlink loop."""
    target = tmp_path / "desired"
    shutil.copytree(EXAMPLES, target)
    (target / "nested.yaml").write_text(NESTED)
    (target / "bomb.yaml").write_text(BOMB)
    (target / "loop.yaml").symlink_to(target / "loop.yaml")
    return target


def _problem_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if not ln.startswith("machine-reconciler: error:")]


def test_validate_names_each_hostile_file_in_one_line(hostile: Path) -> None:
    """Exit 1 quickly, one line per bad file, the two good apps untouched."""
    result = run_cli("validate", str(hostile), url=NOWHERE, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert sorted(_problem_lines(result.stderr)) == sorted(
        [
            f"{hostile / 'bomb.yaml'}:2:48: document expands to more than 20000 values "
            "(YAML aliases used too often?)",
            f"{hostile / 'loop.yaml'}: cannot read: too many levels of symbolic links",
            f"{hostile / 'nested.yaml'}:2:67: document nests deeper than 64 levels",
        ]
    )
    assert "blocked app(s): acme-bomb, acme-nested" in result.stderr


def test_plan_still_plans_the_good_apps(hostile: Path) -> None:
    """``plan`` shows the good apps and exits 1 because of the bad files."""
    result = run_cli("plan", str(hostile), "--embedded", url=NOWHERE, timeout=90)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "acme-web" in result.stdout
    assert "acme-jobs" in result.stdout


def test_apply_never_exits_0_past_an_unreadable_file(tmp_path: Path) -> None:
    """A file without a readable app name (a list, a symlink loop) makes apply partial (3)."""
    target = copy_examples(tmp_path / "desired")
    (target / "list.yaml").write_text("- a\n- b\n")
    (target / "loop.yaml").symlink_to(target / "loop.yaml")
    result = run_cli("apply", str(target), "--yes", "--embedded", url=NOWHERE, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "list.yaml" in result.stdout  # in the summary table, as not applied
    assert "loop.yaml" in result.stdout


def test_a_token_with_a_trailing_newline_works(tmp_path: Path, emulator_url: str) -> None:
    """``FLY_API_TOKEN="$(cat token-file)"`` style values keep their newline: it is stripped."""
    target = tmp_path / "desired"
    shutil.copytree(EXAMPLES, target)
    url = emulator_url
    control(url, "POST", "/seed", {"apps": [{"name": "acme-web"}, {"name": "acme-jobs"}]})
    result = run_cli("plan", str(target), url=url, timeout=60, FLY_API_TOKEN=f"{TOKEN}\n")
    assert result.returncode == 0, result.stderr
    assert "LocalProtocolError" not in result.stderr


def test_a_token_with_inner_whitespace_is_refused_in_one_line(tmp_path: Path) -> None:
    """Refused at start-up, naming the variable and never showing the token."""
    target = tmp_path / "desired"
    shutil.copytree(EXAMPLES, target)
    bad = f"{TOKEN[:8]} {TOKEN[8:]}"
    result = run_cli("plan", str(target), url=NOWHERE, timeout=60, FLY_API_TOKEN=bad)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "FLY_API_TOKEN holds whitespace (U+0020) inside the token" in result.stderr
    assert TOKEN[8:] not in result.stderr


def test_ten_thousand_machines_in_one_region_are_refused(tmp_path: Path, emulator_url: str) -> None:
    """``regions: {ams: 10000}`` validates, but apply refuses it (exit 4) and creates nothing."""
    target = tmp_path / "desired"
    target.mkdir()
    (target / "web.yaml").write_text(
        "app: acme-web\ndefaults:\n  config:\n    image: registry.fly.io/acme-web:v1\n"
        "groups:\n  web:\n    regions: {ams: 10000}\n"
    )
    url = emulator_url
    control(url, "POST", "/seed", {"apps": [{"name": "acme-web"}]})
    result = run_cli("apply", str(target), "--yes", url=url, timeout=120)
    assert result.returncode == 4, result.stderr
    assert "more than max_create 100" in result.stdout + result.stderr
    assert {entry["method"] for entry in control(url, "GET", "/requests")} == {"GET"}
