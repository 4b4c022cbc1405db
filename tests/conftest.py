"""Fixtures shared by every test folder.

Settings come from init kwargs in tests, never from the developer's environment: the autouse
``clean_environ`` fixture removes every variable the controller reads (pydantic-settings
``tests/conftest.py`` and httpx ``tests/conftest.py`` do the same).
"""

from __future__ import annotations

import os

import pytest

from controller.testing import FakeClock

_OWN_PREFIXES = ("MACHINE_RECONCILER_", "FLY_")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test without the controller's environment variables."""
    for name in list(os.environ):
        if name.startswith(_OWN_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture
def fake_clock() -> FakeClock:
    """A clock that only moves when slept on: backoff tests take no wall time."""
    return FakeClock()
