"""Fixtures for the chaos suite: one served emulator per module, a desired-state directory, and
how many hypothesis examples to run.

``make test`` runs a short, fixed-seed slice (derandomized, ``CHAOS_EXAMPLES`` unset: 2 fault
schedules per property); ``make chaos`` sets ``CHAOS_EXAMPLES`` (default there: 30) and
``CHAOS_RANDOM=1`` for fresh schedules on every run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.chaos.harness import Emulator, World, served_emulator

EXAMPLES = int(os.environ.get("CHAOS_EXAMPLES", "2"))
RANDOM = os.environ.get("CHAOS_RANDOM") == "1"


def chaos_settings(examples: int = EXAMPLES) -> settings:
    """Hypothesis settings for properties whose examples run real processes (seconds each)."""
    return settings(
        max_examples=examples,
        derandomize=not RANDOM,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with served_emulator() as served:
        yield served


@pytest.fixture
def world(emulator: Emulator, tmp_path: Path) -> World:
    directory = tmp_path / "desired"
    directory.mkdir()
    return World(emulator, directory)
