"""Fixtures shared by every test folder.

Settings come from init kwargs in tests, never from the developer's environment: the autouse
``clean_environ`` fixture removes every variable the controller reads (pydantic-settings
``tests/conftest.py`` and httpx ``tests/conftest.py`` do the same).

Every async test runs on :class:`controller.testing.AutojumpEventLoop` (pytest-asyncio's
``pytest_asyncio_loop_factories`` hook), so a :class:`FakeClock` jumps to its next sleeper exactly
when every task waits.  ``loop.time()`` stays real on it, so tests against real loopback servers
and subprocesses keep real time on the same loop.

``make test`` runs the suite under pytest-xdist: each worker keeps its own hypothesis example
database (no two processes write one directory), and tests take ports and paths per test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

from controller.testing import AutojumpEventLoop, FakeClock

_OWN_PREFIXES = ("MACHINE_RECONCILER_", "FLY_")

_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _XDIST_WORKER:
    settings.register_profile(
        "xdist-worker",
        database=DirectoryBasedExampleDatabase(f".hypothesis/examples-{_XDIST_WORKER}"),
    )
    settings.load_profile("xdist-worker")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """One loop for every async test: the one on which FakeClock autojumps."""
    return {"autojump": AutojumpEventLoop}


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
