"""Pure pieces of the executor: batching, ordering, result aggregation, crash and check rules."""

from __future__ import annotations

from typing import Any

import pytest

from controller.execution.executor import ExecutorSettings, to_live_machine
from controller.execution.outcomes import AppResult, MachineResult, Outcome, one_line
from controller.execution.rollout import batch_size, batches, group_work
from controller.execution.waiting import configured_checks, crash_since_update
from controller.flyapi import Machine, MachineEvent
from controller.model.actual import LiveMachine
from controller.planning.plan import plan
from tests.executor.support import IMAGE_V2, desired


def result(outcome: Outcome, **kwargs: Any) -> MachineResult:
    """A result with defaults for the fields a test does not care about."""
    fields: dict[str, Any] = {
        "app": "web",
        "machine_id": "m1",
        "slot": "web-ams-0",
        "group": "web",
        "region": "ams",
        "action": "update",
        "outcome": outcome,
    }
    return MachineResult(**{**fields, **kwargs})


def test_batches_cut_in_order_with_a_short_tail() -> None:
    """batches() keeps order and leaves the remainder in a last, shorter batch."""
    assert batches([1, 2, 3, 4, 5], 2) == [(1, 2), (3, 4), (5,)]
    assert batches([], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        batches([1], 0)


@pytest.mark.parametrize(
    ("max_unavailable", "size", "expected"),
    [(0.33, 3, 1), (0.33, 10, 3), (0.5, 6, 3), (0.1, 4, 1), (2, 10, 2), (5, 3, 5)],
)
def test_batch_size_is_a_fraction_of_the_group_or_an_absolute_count(
    max_unavailable: float, size: int, expected: int
) -> None:
    """max_unavailable: a fraction of the group (at least 1) or an absolute count."""
    app = desired(
        groups={"web": {"regions": {"ams": size}, "update": {"max_unavailable": max_unavailable}}}
    )
    assert batch_size(app.groups[0], size) == expected
    assert batch_size(None, size) == 1


def test_group_work_follows_file_order_and_puts_undeclared_groups_last() -> None:
    """Declared groups keep file order; managed machines of removed groups come after."""
    app = desired(
        groups={"zeta": {"regions": {"ams": 1}}, "alpha": {"regions": {"iad": 1}}}, prune=True
    )
    orphan = LiveMachine(
        id="0000000000000a",
        region="ams",
        state="started",
        version="v",
        config={
            "image": IMAGE_V2,
            "metadata": {
                "reconciler/managed": "true",
                "reconciler/group": "old",
                "reconciler/slot": "old-ams-0",
            },
        },
    )
    work = group_work(plan(app, [orphan], allow_empty=True), app)
    assert [w.name for w in work] == ["zeta", "alpha", "old"]
    assert [len(w.creates) for w in work] == [1, 1, 0]
    assert [d.machine_id for d in work[2].destroys] == [orphan.id]


def test_app_result_flags_follow_the_outcomes() -> None:
    """converged / partial / lease_blocked / fatal / retry_after derive from the results."""
    ok = AppResult("web", (result(Outcome.OK), result(Outcome.NOOP)))
    assert ok.converged
    assert [ok.partial, ok.lease_blocked, ok.fatal, ok.refused, ok.failed] == [False] * 5
    mixed = AppResult(
        "web",
        (
            result(Outcome.CAPACITY, retry_after=30.0),
            result(Outcome.LEASE_HELD, retry_after=12.0),
            result(Outcome.ERROR, error_class="unauthorized", fatal=True),
        ),
    )
    assert (mixed.converged, mixed.partial, mixed.lease_blocked, mixed.fatal) == (
        False,
        True,
        True,
        True,
    )
    assert mixed.retry_after == 12.0
    assert mixed.counts() == {"capacity": 1, "lease_held": 1, "error": 1}
    failed = AppResult("web", error_class="server_error", message="listing failed")
    assert failed.failed
    assert not failed.converged


def test_results_describe_themselves_on_one_line() -> None:
    """describe() names the action, slot, machine and outcome; messages are one short line."""
    text = result(Outcome.UNHEALTHY, message="checks failed").describe()
    assert text == "update web-ams-0 (m1) -> unhealthy: checks failed"
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 1000)) == 300


def test_settings_reject_inconsistent_numbers() -> None:
    """Invalid settings fail at construction, not in the middle of a rollout."""
    with pytest.raises(ValueError, match="shorter than the ttl"):
        ExecutorSettings(lease_ttl=5, lease_refresh=5)
    with pytest.raises(ValueError, match="max_in_flight"):
        ExecutorSettings(max_in_flight=0)
    with pytest.raises(ValueError, match=r"1\.\.60"):
        ExecutorSettings(wait_chunk=90)
    assert ExecutorSettings().retry_policy().max_conflict_retries == 5


def test_configured_checks_count_top_level_and_service_checks() -> None:
    """Checks are counted from config.checks plus every service's checks list."""
    config = {
        "checks": {"a": {}, "b": {}},
        "services": [{"checks": [{}, {}]}, {"internal_port": 80}, {"checks": [{}]}],
    }
    assert configured_checks(config) == 5
    assert configured_checks({}) == 0


def _exit(code: int, *, requested: bool = False, at: int) -> MachineEvent:
    return MachineEvent(
        type="exit",
        status="stopped",
        timestamp=at,
        request={"exit_event": {"exit_code": code, "requested_stop": requested}},
    )


def test_crash_detection_looks_only_after_the_newest_update() -> None:
    """Unrequested non-zero exits after the update count; older or requested ones do not."""
    update = MachineEvent(type="update", status="replacing", timestamp=100)
    assert crash_since_update([_exit(1, at=50), update]) is None
    assert crash_since_update([update, _exit(0, at=150)]) is None
    assert crash_since_update([update, _exit(143, requested=True, at=150)]) is None
    assert crash_since_update([_exit(2, at=150), update]) == (
        "machine exited with code 2 after the update"
    )


def test_crash_detection_without_an_update_event_ignores_exits_before_the_write() -> None:
    """With no launch/update marker, exits older than our write (less skew) are history."""
    old_crash = _exit(1, at=1_000_000)  # at unix 1000 s
    new_crash = _exit(1, at=2_000_000)  # at unix 2000 s
    assert crash_since_update([old_crash], since=1_500.0) is None
    assert crash_since_update([new_crash, old_crash], since=1_500.0) is not None


def test_api_machines_map_to_planner_machines() -> None:
    """to_live_machine keeps id, region, state, version, config, checks and created_at."""
    machine = Machine.model_validate(
        {
            "id": "3d8d413b29d089",
            "region": "ams",
            "state": "started",
            "instance_id": "01HQ73A7BFFDF1B6WMGHFZZ4E7",
            "config": {"image": IMAGE_V2},
            "checks": [{"name": "alive", "status": "passing"}],
            "created_at": "2025-01-01T00:00:00Z",
        }
    )
    live = to_live_machine(machine)
    assert (live.id, live.region, live.state, live.version) == (
        "3d8d413b29d089",
        "ams",
        "started",
        "01HQ73A7BFFDF1B6WMGHFZZ4E7",
    )
    assert live.config == {"image": IMAGE_V2}
    assert [(c.name, c.status) for c in live.checks] == [("alive", "passing")]
    assert live.created_at == "2025-01-01T00:00:00Z"


def test_one_outcome_table_drives_exit_code_run_result_and_alerts() -> None:
    """Every outcome has one row; apply's exit code, the daemon's run result and the alert
    observations all read it, so 'partial' means the same thing everywhere."""
    from controller.cli.apply import exit_code
    from controller.core.outcomes import OUTCOMES, Severity
    from controller.daemon.telemetry import observations, run_result

    assert set(OUTCOMES) == set(Outcome)
    for outcome in Outcome:
        app = AppResult("web", (result(Outcome.OK), result(outcome)))
        severity = outcome.severity
        assert app.severity is severity
        assert exit_code([app]) == {0: 0, 1: 3, 2: 4, 3: 1}[severity.value]
        expected = {
            Severity.CONVERGED: "converged",
            Severity.PARTIAL: "partial",
            Severity.REFUSED: "lease_blocked",  # no refused plan here
            Severity.FAILED: "failed",
        }[severity]
        assert run_result(app) == expected, outcome
        assert app.partial is outcome.blocked
        assert app.converged is outcome.done
        seen, untouched = observations(app)
        alert = OUTCOMES[outcome].alert if outcome is not Outcome.REFUSED else None
        assert [o.key.condition.value for o in seen] == ([alert] if alert else []), outcome
        assert bool(untouched) is (outcome is Outcome.ROLLOUT_HALTED)


def test_fatal_comes_from_the_error_type_not_its_name() -> None:
    """GiveUp.fatal decides: a 401/403 result is fatal (run failed, auth alert); an error
    merely *named* like one is not."""
    from controller.core.errors import Forbidden, ServerError
    from controller.core.retry import is_fatal
    from controller.daemon.telemetry import observations, run_result

    forbidden = Forbidden(method="GET", path="/v1/apps/web/machines", status=403)
    assert is_fatal(forbidden)
    assert not is_fatal(ServerError(method="GET", path="/v1/apps/web/machines", status=500))
    fatal = AppResult("web", (result(Outcome.ERROR, error_class="forbidden", fatal=True),))
    assert fatal.fatal
    assert run_result(fatal) == "failed"
    [seen], _ = observations(fatal)
    assert seen.key.condition.value == "auth"
    named = AppResult("web", (result(Outcome.REQUEUE, error_class="unauthorized"),))
    assert not named.fatal
    assert run_result(named) == "partial"


def test_every_default_lives_once_in_core_defaults() -> None:
    """The settings model, the executor's settings and the policies built from them agree
    because they all read controller.core.defaults."""
    from controller.core import defaults as d
    from controller.core.retry import RetryPolicy
    from controller.flyapi import RateLimits
    from controller.settings import DaemonSettings

    daemon = DaemonSettings(_env_file=None)
    ex = ExecutorSettings()
    lease = ex.lease_policy()
    assert daemon.lease_wait == ex.lease_wait == lease.wait == d.LEASE_WAIT
    assert daemon.max_in_flight == ex.max_in_flight == d.MAX_IN_FLIGHT
    assert (lease.ttl, lease.refresh_every) == (d.LEASE_TTL, d.LEASE_REFRESH)
    assert RateLimits.from_settings(daemon) == RateLimits()
    assert ex.retry_policy().max_conflict_retries == RetryPolicy().max_conflict_retries
    assert daemon.retry_max_attempts == RetryPolicy().max_attempts == d.RETRY_MAX_ATTEMPTS
    assert ex.wait_policy().smoke == d.SMOKE_SECONDS
