"""Hostile desired-state files: each ends in one error naming the file, blocking only its app.

Issue 14: deeply nested YAML used to end in a ``RecursionError`` traceback, an alias bomb ran
past 60 s and 3 GB, and symlink loops or dangling symlinks were skipped in silence.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from controller.loading.loader import LoadLimits, load_dir, load_file, load_text

GOOD = """\
app: acme-web
defaults:
  config:
    image: registry.fly.io/acme-web:v42
groups:
  web:
    regions: {ams: 2}
"""

BOMB = "app: acme-bomb\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in itertools.pairwise([None, "a", "b", "c", "d", "e", "f", "g", "h", "i"])
)


def _one_error(text: str, limits: LoadLimits | None = None) -> str:
    app, errors = load_text(text, "d/x.yaml", environ={}, limits=limits or LoadLimits())
    assert app is None
    assert len(errors) == 1, errors
    return str(errors[0])


def test_deep_nesting_is_one_error_not_a_recursion_error() -> None:
    """Thousands of ``[`` stop at the depth limit, with the line and column where it was hit."""
    error = _one_error("app: acme-deep\nx: " + "[" * 5000 + "]" * 5000 + "\n")
    assert error.startswith("d/x.yaml:2:")
    assert error.endswith("document nests deeper than 64 levels")


def test_deep_nesting_of_mappings_too() -> None:
    """Block-style nesting is bounded the same way."""
    text = (
        "app: acme-deep\n" + "".join(f"{'  ' * i}k{i}:\n" for i in range(200)) + "  " * 200 + "1\n"
    )
    assert _one_error(text).endswith("document nests deeper than 64 levels")


def test_alias_bomb_stops_at_the_expansion_limit() -> None:
    """'Billion laughs' (9**9 values from ten lines) stops after ``max_values`` values."""
    assert len(BOMB) < 500
    error = _one_error(BOMB)
    assert error.startswith("d/x.yaml:")
    assert "document expands to more than 20000 values" in error


def test_node_limit() -> None:
    """A document with too many nodes, without any alias, is refused too."""
    text = "app: a\nx: [" + ", ".join("1" for _ in range(300)) + "]\n"
    assert "more than 100 YAML nodes" in _one_error(text, LoadLimits(max_nodes=100))


def test_time_limit_uses_the_clock() -> None:
    """The time bound is checked while reading; a zero budget stops a large document."""
    text = "app: a\nx: [" + ", ".join(str(i) for i in range(2000)) + "]\n"
    assert _one_error(text, LoadLimits(max_seconds=0.0)).endswith(
        "document takes longer than 0 s to read"
    )


def test_text_larger_than_the_limit() -> None:
    """``load_text`` applies the size bound to text given directly."""
    assert _one_error(GOOD + "#" * 200, LoadLimits(max_bytes=100)).endswith(
        "document is larger than 100 bytes"
    )


def test_large_file_is_refused_before_reading(tmp_path: Path) -> None:
    """A 5 MB file is one error naming it and its size; it blocks nothing else."""
    (tmp_path / "good.yaml").write_text(GOOD)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"app: acme-big\n" + b"#" * (5 * 1024 * 1024))
    result = load_dir(tmp_path, environ={})
    assert list(result.apps) == ["acme-web"]
    assert [str(e) for e in result.errors] == [
        f"{big}: cannot read: file is {big.stat().st_size} bytes, more than the 1048576-byte limit"
    ]


def test_non_utf8_names_the_offset(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are one error with the offset of the first bad byte."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"app: caf\xe9\n")
    _, errors = load_file(path, environ={})
    assert [str(e) for e in errors] == [f"{path}: not UTF-8 text (invalid byte at offset 8)"]


def test_symlink_loop_is_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    """A ``*.yaml`` symlink loop is listed and named."""
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(tmp_path / "loop.yaml")
    (tmp_path / "good.yaml").write_text(GOOD)
    result = load_dir(tmp_path, environ={})
    assert list(result.apps) == ["acme-web"]
    assert [str(e) for e in result.errors] == [
        f"{loop}: cannot read: too many levels of symbolic links"
    ]
    assert str(loop) in result.files


def test_dangling_symlink_is_an_error(tmp_path: Path) -> None:
    """A desired file turned into a dangling symlink (a ConfigMap swap gone wrong) is named."""
    link = tmp_path / "web.yaml"
    link.symlink_to(tmp_path / "gone" / "web.yaml")
    result = load_dir(tmp_path, environ={})
    assert [str(e) for e in result.errors] == [f"{link}: cannot read: dangling symbolic link"]
    assert not result.ok


def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    """A FIFO named ``*.yaml`` would block ``open()`` forever; it is refused from ``stat``."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    result = load_dir(tmp_path, environ={})
    assert [str(e) for e in result.errors] == [f"{fifo}: cannot read: not a regular file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_is_named(tmp_path: Path) -> None:
    """A file without read permission is an error naming it."""
    path = tmp_path / "secret.yaml"
    path.write_text(GOOD)
    path.chmod(0)
    result = load_dir(tmp_path, environ={})
    assert [str(e) for e in result.errors] == [f"{path}: cannot read: Permission denied"]


def test_hostile_file_blocks_only_its_own_app(tmp_path: Path) -> None:
    """The nested file and the bomb block the apps named on their ``app:`` lines only."""
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "deep.yaml").write_text("app: acme-deep\nx: " + "[" * 3000 + "\n")
    (tmp_path / "bomb.yaml").write_text(BOMB)
    result = load_dir(tmp_path, environ={})
    assert list(result.apps) == ["acme-web"]
    assert result.blocked == {
        "acme-bomb": (str(tmp_path / "bomb.yaml"),),
        "acme-deep": (str(tmp_path / "deep.yaml"),),
    }
    assert len(result.errors) == 2
    assert all("\n" not in str(e) for e in result.errors)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty file"), ("- a\n- b\n", "expected a mapping"), ("app: [\n", "invalid YAML")],
)
def test_files_without_an_app_name_are_errors(tmp_path: Path, text: str, message: str) -> None:
    """Empty, a list, invalid YAML: an error naming the file, even with no app to block."""
    path = tmp_path / "x.yaml"
    path.write_text(text)
    result = load_dir(tmp_path, environ={})
    assert not result.ok
    assert result.blocked == {}
    assert str(result.errors[0]).startswith(str(path))
    assert message in str(result.errors[0])
