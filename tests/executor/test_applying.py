"""The apply front end: the exit-code mapping and the plain-text reporter."""

from __future__ import annotations

import io

import pytest

from controller.cli.apply import (
    EXIT_CONVERGED,
    EXIT_ERROR,
    EXIT_PARTIAL,
    EXIT_REFUSED,
    Reporter,
    exit_code,
)
from controller.execution.outcomes import AppResult, MachineResult, Outcome, Progress
from controller.testing import FakeClock


def result(*outcomes: Outcome, app: str = "a", error_class: str | None = None) -> AppResult:
    """An AppResult with one update per outcome."""
    return AppResult(
        app=app,
        results=tuple(
            MachineResult(
                app=app,
                machine_id=f"m{i}",
                slot=f"g-iad-{i}",
                group="g",
                region="iad",
                action="update",
                outcome=o,
                error_class=error_class if o is Outcome.ERROR else None,
            )
            for i, o in enumerate(outcomes)
        ),
    )


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ((Outcome.OK, Outcome.NOOP), EXIT_CONVERGED),
        ((), EXIT_CONVERGED),
        ((Outcome.OK, Outcome.CAPACITY), EXIT_PARTIAL),
        ((Outcome.QUOTA,), EXIT_PARTIAL),
        ((Outcome.VOLUME,), EXIT_PARTIAL),
        ((Outcome.UNHEALTHY, Outcome.ROLLOUT_HALTED), EXIT_PARTIAL),
        ((Outcome.REQUEUE,), EXIT_PARTIAL),
        ((Outcome.LEASE_HELD, Outcome.CAPACITY), EXIT_REFUSED),
        ((Outcome.BAD_REQUEST,), EXIT_ERROR),
        ((Outcome.ERROR, Outcome.LEASE_HELD), EXIT_ERROR),
    ],
)
def test_exit_code_by_outcome(outcomes: tuple[Outcome, ...], expected: int) -> None:
    """Each outcome maps to the documented exit code; the most severe wins (1 > 4 > 3 > 0)."""
    assert exit_code([result(*outcomes)]) == expected


def test_a_blocked_app_makes_an_otherwise_converged_apply_partial() -> None:
    """A broken desired-state file for one app: the others converged, the run is partial."""
    assert exit_code([result(Outcome.OK)], blocked_apps=["b"]) == EXIT_PARTIAL


def test_an_app_that_could_not_be_listed_is_an_error() -> None:
    """Listing failed for one app: exit 1 even if the other converged."""
    failed = AppResult(app="b", error_class="server_error", message="listing failed")
    assert exit_code([result(Outcome.OK), failed]) == EXIT_ERROR


def test_auth_failure_is_an_error() -> None:
    """A 401 anywhere is fatal for the run: exit 1."""
    assert exit_code([result(Outcome.ERROR, error_class="unauthorized")]) == EXIT_ERROR


def test_plain_reporter_prints_one_line_per_final_result_and_skips_noise() -> None:
    """Off a terminal: one line per changed machine (UTC timestamp first, the action's duration
    last), no progress steps, no no-op lines."""
    out = io.StringIO()
    clock = FakeClock(wall_start=1_700_000_000.0)
    reporter = Reporter(out, force_plain=True, clock=clock)
    reporter.start({"a": 2})
    reporter.event(
        Progress(
            app="a", machine_id="m0", slot="g-iad-0", group="g", action="update", phase="writing"
        )
    )
    clock.advance(2.5)
    for r in result(Outcome.OK, Outcome.NOOP, Outcome.CAPACITY).results:
        reporter.event(r)
    reporter.stop()
    lines = out.getvalue().splitlines()
    assert lines == [
        "2023-11-14T22:13:22Z a: update g-iad-0 (m0) -> ok (2.5s)",
        "2023-11-14T22:13:22Z a: update g-iad-2 (m2) -> capacity",
    ]


def test_summary_names_each_app_and_blocked_files() -> None:
    """The summary table has a row per app, and one for an app whose file is broken."""
    out = io.StringIO()
    reporter = Reporter(out, force_plain=True)
    reporter.summary([result(Outcome.OK, Outcome.CAPACITY)], ["broken-app"])
    text = out.getvalue()
    assert "partial" in text
    assert "broken-app" in text
    assert "desired-state file invalid" in text
