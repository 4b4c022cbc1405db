"""Health: a machine that does not become healthy halts its group; other groups carry on."""

from __future__ import annotations

from typing import Any

import pytest

from controller.execution.outcomes import Event, Outcome, Progress
from tests.executor.support import CRASHLOOP, IMAGE_V1, IMAGE_V2, desired, world

CHECKS: dict[str, Any] = {"checks": {"alive": {"type": "tcp", "port": 8080}}}


def fleet(web: dict[str, Any], worker_image: str) -> Any:
    """Group web (3 in ams, one at a time) and group worker (2 in iad)."""
    return desired(
        groups={
            "web": {
                "regions": {"ams": 3},
                "update": {"max_unavailable": 1, "wait_timeout": 60},
                "config": web,
            },
            "worker": {"regions": {"iad": 2}, "config": {"image": worker_image}},
        }
    )


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"image": CRASHLOOP}, "exited with code 1"),
        ({"image": IMAGE_V2, **CHECKS, "env": {"EMULATOR_FAIL_CHECKS": "1"}}, "checks not passing"),
    ],
    ids=["crashloop", "failing-checks"],
)
async def test_unhealthy_machine_halts_its_group_and_other_groups_proceed(
    bad: dict[str, Any], reason: str
) -> None:
    """The first web machine fails; the other two keep their version; worker still rolls."""
    async with world() as w:
        good = {"image": IMAGE_V1, **(CHECKS if "checks" in bad else {})}
        assert (await w.reconcile(fleet(good, IMAGE_V1))).converged
        before = {m["id"]: m["version"] for m in w.machines()}
        mark = w.mark()
        result = await w.reconcile(fleet(bad, IMAGE_V2))
        web = {r.slot: r for r in result.results if r.group == "web"}
        assert web["web-ams-0"].outcome is Outcome.UNHEALTHY
        assert reason in web["web-ams-0"].message
        for slot in ("web-ams-1", "web-ams-2"):
            assert web[slot].outcome is Outcome.ROLLOUT_HALTED
            assert web[slot].attempts == 0
            assert "web-ams-0" in web[slot].message
        worker = [r for r in result.results if r.group == "worker"]
        assert [r.outcome for r in worker] == [Outcome.OK, Outcome.OK]
        halted_ids = {web[s].machine_id for s in ("web-ams-1", "web-ams-2")}
        for machine in w.machines():
            if machine["id"] in halted_ids:
                assert machine["version"] == before[machine["id"]]  # untouched
                assert not w.requests("POST", rf"/machines/{machine['id']}(/lease)?$", since=mark)
        assert result.partial
        assert not result.converged
        assert w.live_leases() == []


async def test_unhealthy_new_machine_halts_the_group_before_updates() -> None:
    """Creates go first: a bad new machine stops the group before existing ones are touched."""
    async with world() as w:
        two = {"web": {"regions": {"ams": 2}}}
        assert (await w.reconcile(desired(groups=two))).converged
        before = {m["id"]: m["version"] for m in w.machines()}
        mark = w.mark()
        result = await w.reconcile(
            desired(image=CRASHLOOP, groups={"web": {"regions": {"ams": 3}}})
        )
        outcomes = {(r.action, r.slot): r.outcome for r in result.results}
        assert outcomes == {
            ("create", "web-ams-2"): Outcome.UNHEALTHY,
            ("update", "web-ams-0"): Outcome.ROLLOUT_HALTED,
            ("update", "web-ams-1"): Outcome.ROLLOUT_HALTED,
        }
        assert all(m["version"] == before[m["id"]] for m in w.machines() if m["id"] in before)
        assert not w.requests("POST", r"/lease$", since=mark)
        assert w.live_leases() == []


async def test_update_silently_replaced_while_waiting_is_unhealthy() -> None:
    """The machine stops running our new version while we wait: unhealthy, group halted."""
    hook: list[Any] = []

    def revert_first(event: Event) -> None:
        if hook and isinstance(event, Progress) and event.phase == "waiting":
            w, target = hook.pop()
            w.emulator.external_writer(
                {
                    "kind": "bump_version",
                    "app": "web",
                    "machine_id": target,
                    "patch": {"image": IMAGE_V1},
                }
            )

    async with world(on_event=revert_first) as w:
        groups = {"web": {"regions": {"ams": 2}, "update": {"max_unavailable": 1}}}
        assert (await w.reconcile(desired(groups=groups))).converged
        first = w.by_slot()["web-ams-0"][0]["id"]
        hook.append((w, first))
        result = await w.reconcile(desired(image=IMAGE_V2, groups=groups))
        outcomes = {r.slot: r for r in result.results}
        assert outcomes["web-ams-0"].outcome is Outcome.UNHEALTHY
        assert "reverted or replaced" in outcomes["web-ams-0"].message
        assert outcomes["web-ams-1"].outcome is Outcome.ROLLOUT_HALTED
        assert w.live_leases() == []
