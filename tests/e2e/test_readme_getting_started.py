"""The README's "Getting started on real Fly" uses the real CLI: every ``machine-reconciler``
command line in it parses, and every flag it uses is in that command's ``--help``."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from controller.cli.commands import build_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _section() -> str:
    start = README.index("## Getting started on real Fly")
    end = README.index("\n## ", start + 1)
    return README[start:end]


def _command_lines() -> list[list[str]]:
    lines = []
    for match in re.finditer(
        r"machine-reconciler ((?:validate|plan|apply|adopt|run)[^`\n#]*)", _section()
    ):
        words = shlex.split(match.group(1).replace("\\n", " "))
        lines.append(words)
    return lines


def test_the_section_exists_and_shows_each_install_route() -> None:
    section = _section()
    for needle in (
        "pipx install .",
        "uv tool install .",
        "docker build",
        "fly tokens create deploy -a APP",
        "FLY_API_TOKEN",
        "MACHINE_RECONCILER_API_TOKEN_FILE",
        "LoadCredential=",
        "existingSecret",
        "adopt",
        "unmanaged",
    ):
        assert needle in section, needle


@pytest.mark.parametrize("words", _command_lines(), ids=lambda w: " ".join(w)[:60])
def test_every_command_line_parses_and_its_flags_are_in_help(words: list[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(words)
    assert args.command == words[0]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    help_text = subparsers.choices[words[0]].format_help()
    for flag in (w for w in words if w.startswith("--")):
        assert flag in help_text, f"{flag} missing from `{words[0]} --help`"
