"""Path building and /wait timeouts at their edges (controller/flyapi/endpoints.py).

Closes the branch-coverage gaps of endpoints.py for the 95 % floor in `make test`.
"""

from __future__ import annotations

import math

import pytest

from controller.flyapi.endpoints import (
    WAIT_MAX_SECONDS,
    WAIT_MIN_SECONDS,
    app_path,
    machine_path,
    wait_seconds,
)


@pytest.mark.parametrize(("app", "machine_id"), [("", "m1"), ("web", "")])
def test_an_empty_app_name_or_machine_id_never_becomes_a_path(app: str, machine_id: str) -> None:
    """An empty segment would address a different resource (/v1/apps//machines): refused."""
    with pytest.raises(ValueError, match="must be non-empty"):
        machine_path(app, machine_id)


def test_path_segments_are_percent_encoded() -> None:
    assert app_path("a/b c") == "/v1/apps/a%2Fb%20c"
    assert machine_path("web", "../x") == "/v1/apps/web/machines/..%2Fx"


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [
        (math.inf, WAIT_MAX_SECONDS),
        (math.nan, WAIT_MAX_SECONDS),
        (0.0, WAIT_MIN_SECONDS),
        (1.2, 2),
        (3600.0, WAIT_MAX_SECONDS),
    ],
)
def test_wait_seconds_are_whole_and_within_what_wait_accepts(timeout: float, seconds: int) -> None:
    assert wait_seconds(timeout) == seconds
