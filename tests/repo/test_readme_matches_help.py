"""README's command lines match the program: every flag the README's usage block shows for a
command is listed by that command's ``--help`` (and the other way round for the commands'
own options), and the documented exit codes and alert conditions exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controller.cli.commands import build_parser, main
from controller.observability.alerts import Condition

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
COMMANDS = ("validate", "plan", "apply", "run", "emulator", "demo", "restart", "adopt")


def _usage_block() -> str:
    start = README.index("## Using it")
    fence = README.index("```sh", start)
    return README[fence : README.index("```", fence + 5)]


def _readme_flags() -> dict[str, set[str]]:
    """Flags per command in the usage block (continuation lines belong to the command above)."""
    flags: dict[str, set[str]] = {}
    current = ""
    for line in _usage_block().splitlines():
        code = line.split("#", 1)[0]
        found = re.match(r"machine-reconciler (\w+)", code)
        if found and found.group(1) in COMMANDS:
            current = found.group(1)
        elif found or not code.startswith(" "):
            current = ""
        if current:
            flags.setdefault(current, set()).update(re.findall(r"--[a-z][a-z-]*", code))
    return flags


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_every_flag_the_readme_shows(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = _readme_flags()
    assert command in readme, f"the README's usage block has no line for {command}"
    text = _help(command, capsys)
    options = text.split("\noptions:", 1)[1].split("\n\n", 1)[0]  # not the epilog
    # Only the flags that start an option entry, not ones its help text mentions
    # (plan's --out help names apply --plan).
    entries = re.findall(r"^ {2}(?:-\w, )?(--[a-z][a-z-]*)", options, flags=re.MULTILINE)
    shown = set(entries) - {"--help"}
    assert readme[command] <= shown, f"{command}: README shows {readme[command] - shown}"
    assert shown <= readme[command], f"{command}: README omits {shown - readme[command]}"


def test_every_option_has_help_text() -> None:
    """No option is listed in --help without a sentence (``plan --output`` had none)."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    assert isinstance(subparsers.choices, dict)
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.option_strings and "--help" not in action.option_strings:
                assert action.help, f"{name} {action.option_strings[0]} has no help text"


def test_documented_alert_conditions_are_all_of_them() -> None:
    for condition in Condition:
        assert f"`{condition.value}`" in README, condition
    assert f"({len(Condition)} conditions:" in README


def test_exit_codes_in_readme_and_epilog() -> None:
    epilog = build_parser().epilog or ""
    assert "130 interrupted" in epilog
    assert "143 on SIGTERM" in epilog
    assert "| | 130, 143 | interrupted by Ctrl-C (130) or SIGTERM (143)" in README
    assert "drift in a `detect_only` app" in README
