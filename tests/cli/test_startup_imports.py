"""The CLI starts fast: a command imports only what it uses (``controller/cli/commands.py``
imports a command's module when that command runs).  Each case runs ``main`` in a fresh
interpreter and lists the modules it imported; the heavy ones (the HTTP client, the settings
model, ``rich``, the executor, the daemon's server) cost ~0.4 s of CPU at every start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "desired_state"
#: What neither ``--help`` nor ``validate`` needs.
HEAVY = (
    "httpx",
    "pydantic_settings",
    "rich",
    "starlette",
    "uvicorn",
    "apscheduler",
    "controller.flyapi",
    "controller.settings",
    "controller.execution",
    "controller.daemon",
    "controller.emulator",
)
_PROBE = """\
import sys
from controller.cli.commands import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("\\n".join(sorted(sys.modules)), file=sys.stderr)
raise SystemExit(code)
"""


def _imported(*args: str) -> set[str]:
    """The modules ``main(args)`` imported (it must exit 0)."""
    ran = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return set(ran.stderr.split())


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


@pytest.mark.parametrize(
    "args", [["--help"], ["--version"], ["plan", "--help"], ["apply", "--help"]], ids=str
)
def test_help_imports_no_model_client_or_output_library(args: list[str]) -> None:
    modules = _imported(*args)
    assert _heavy(modules) == []
    assert not any(m == "pydantic" or m.startswith("controller.model") for m in modules)


def test_validate_imports_the_models_but_no_client() -> None:
    modules = _imported("validate", str(EXAMPLES))
    assert "controller.model.desired" in modules, "validate checks the files with the models"
    assert _heavy(modules) == []


def test_plan_imports_the_client() -> None:
    """The probe sees what a command imports: ``plan`` does need the API client."""
    modules = _imported("plan", str(EXAMPLES), "--embedded")
    assert {"controller.flyapi", "httpx"} <= modules
