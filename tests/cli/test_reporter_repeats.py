"""The apply reporter folds the same problem on many machines (issue 14): a refused plan of
10,000 creates prints REPEATS_SHOWN lines and one counting line, not 10,000; successes and
different problems are never folded."""

from __future__ import annotations

import io

from controller.cli.apply import REPEATS_SHOWN, Reporter
from controller.execution.outcomes import MachineResult, Outcome
from controller.testing import FakeClock

REFUSAL = "would create 10000 machines of big, more than max_create 100"


def _create(n: int, outcome: Outcome, region: str = "ams", message: str = "") -> MachineResult:
    return MachineResult(
        app="big",
        machine_id=None if outcome is Outcome.REFUSED else f"m{n}",
        slot=f"web-{region}-{n}",
        group="web",
        region=region,
        action="create",
        outcome=outcome,
        message=message,
    )


def _report(*results: MachineResult) -> list[str]:
    out = io.StringIO()
    reporter = Reporter(out, force_plain=True, clock=FakeClock(wall_start=1_700_000_000.0))
    for r in results:
        reporter.event(r)
    reporter.stop()
    return [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]  # no timestamp


def test_ten_thousand_refusals_are_ten_lines_and_a_count() -> None:
    lines = _report(*(_create(n, Outcome.REFUSED, message=REFUSAL) for n in range(10_000)))
    assert len(lines) == REPEATS_SHOWN + 1
    assert lines[0] == f"big: create web-ams-0 -> refused: {REFUSAL}"
    assert lines[-1] == (
        f"big: create -> refused for {10_000 - REPEATS_SHOWN:,} more machines in web/ams "
        "like the above"
    )


def test_a_few_repeats_print_as_before() -> None:
    lines = _report(*(_create(n, Outcome.REFUSED, message=REFUSAL) for n in range(REPEATS_SHOWN)))
    assert lines == [f"big: create web-ams-{n} -> refused: {REFUSAL}" for n in range(10)]


def test_successes_and_other_problems_are_never_folded() -> None:
    """Each ok line is a log line of its own; another region or message is another problem."""
    oks = [_create(n, Outcome.OK) for n in range(30)]
    capacity = [_create(n, Outcome.CAPACITY, "iad", "no capacity") for n in range(12)]
    quota = [_create(n, Outcome.QUOTA, "iad", "over quota") for n in range(2)]
    lines = _report(*oks, *capacity, *quota)
    assert sum(line.endswith("-> ok") for line in lines) == 30
    assert sum("-> capacity: no capacity" in line for line in lines) == REPEATS_SHOWN
    assert sum("-> quota: over quota" in line for line in lines) == 2
    assert lines[-1] == "big: create -> capacity for 2 more machines in web/iad like the above"
