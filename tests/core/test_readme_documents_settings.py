"""The README documents every setting (DESIGN.md 9: every setting with its default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.settings import DaemonSettings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("field", sorted(DaemonSettings.model_fields))
def test_setting_is_in_the_readme(field: str) -> None:
    """Each settings field appears in the README by name or by its environment variable."""
    names = {f"`{field}`", f"MACHINE_RECONCILER_{field.upper()}"}
    if field == "api_token":
        names.add("FLY_API_TOKEN")  # the token's variable has flyctl's name
    assert any(name in README for name in names), f"{field} is not documented"
