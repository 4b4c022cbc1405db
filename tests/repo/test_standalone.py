"""The repository stands alone: a user's clone has nothing beside it.

Every file git tracks (code, tests, Makefile, Dockerfile, chart, units, docs) is read and must
not name a path outside the checkout: no parent-relative path that climbs above the root, no
absolute path of the developers' machines, no ``Path(__file__).parents[N]`` that leaves the
tree.  Every relative link in the Markdown files must point at a file that exists in the clone.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Spelt in pieces so this file does not match its own patterns.
_SIBLING = "shared"
OUTSIDE_TEXT = re.compile(
    "|".join(
        (
            re.escape("..") + "/" + _SIBLING,  # the developers' notes folder beside the checkout
            "/" + "work/",  # the developers' machines
            re.escape(_SIBLING + "/spec"),
            re.escape(_SIBLING + "/FLY_API"),
            re.escape(_SIBLING + "/DESIGN"),
        )
    )
)
PARENTS_INDEX = re.compile(r"parents\[(\d+)\]")
PARENT_CHAIN = re.compile(r"__file__\)(?:\.resolve\(\))?((?:\.parent)+)")
MD_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked_files() -> list[Path]:
    """The files a clone gets (git's list when this is a checkout, else every file)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = {".venv", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"}
        return [
            p
            for p in ROOT.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(ROOT).parts)
        ]
    return [ROOT / name for name in out.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def climbs_out(relative: Path, levels: int) -> bool:
    """``levels`` parents up from a file at ``relative`` leave the repository root."""
    return levels >= len(relative.parts)


def test_the_file_list_is_the_checkout() -> None:
    """The scan sees the package, the tests and the build files (so it cannot pass empty)."""
    names = {p.relative_to(ROOT).as_posix() for p in tracked_files()}
    assert {"Makefile", "Dockerfile", "pyproject.toml", "controller/cli/commands.py"} <= names


def test_no_file_names_a_path_outside_the_repository() -> None:
    """No tracked file refers to the notes folder beside the checkout or to machine paths."""
    offenders = []
    for path in tracked_files():
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE_TEXT.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_no_python_file_climbs_above_the_root() -> None:
    """``Path(__file__).parents[N]`` and ``.parent`` chains stay inside the checkout."""
    offenders = []
    for path in tracked_files():
        if path.suffix != ".py" or (text := text_of(path)) is None:
            continue
        relative = path.relative_to(ROOT)
        for number, line in enumerate(text.splitlines(), start=1):
            levels = [int(m) for m in PARENTS_INDEX.findall(line)]
            levels += [chain.count(".parent") - 1 for chain in PARENT_CHAIN.findall(line)]
            if any(climbs_out(relative, level) for level in levels):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize(
    ("relative", "levels", "outside"),
    [
        ("tests/support/spec_check.py", 2, False),
        ("tests/support/spec_check.py", 3, True),
        ("controller/cli.py", 1, False),
        ("controller/cli.py", 2, True),
    ],
)
def test_climbs_out_counts_levels_from_the_file(relative: str, levels: int, outside: bool) -> None:
    """parents[0] is the file's folder, so a file two folders deep reaches the root at [2]."""
    assert climbs_out(Path(relative), levels) is outside


def test_the_patterns_catch_what_they_are_for() -> None:
    """The checks above would fail on the paths that broke fresh clones before."""
    assert OUTSIDE_TEXT.search('Path("..' + "/" + _SIBLING + '/spec/x.json")')
    climbing = "Path(__file__).resolve().parents" + "[3] / 'x'"
    assert PARENTS_INDEX.findall(climbing) == ["3"]
    assert PARENT_CHAIN.findall("Path(__file__).parent.parent.parent") == [".parent" * 3]


def test_every_relative_markdown_link_resolves() -> None:
    """A reader of the repository alone can follow every link in its Markdown files."""
    broken = []
    for path in tracked_files():
        if path.suffix != ".md" or (text := text_of(path)) is None:
            continue
        for target in MD_LINK.findall(text):
            if re.match(r"^[a-z]+:", target):  # https:, mailto:
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.exists() or not resolved.is_relative_to(ROOT):
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_spec_ships_inside_the_package() -> None:
    """The OpenAPI copy the tests and emulator read lives in the package, with its provenance."""
    from controller.emulator.spec import SPEC_PATH, load_spec

    assert SPEC_PATH.is_relative_to(ROOT)
    assert load_spec()["openapi"].startswith("3.0")
    assert (SPEC_PATH.parent / "SOURCE.md").is_file()
