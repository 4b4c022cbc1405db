"""The reconcile pass: list all, plan, re-list when suspicious, refuse, destroy, fail cleanly."""

from __future__ import annotations

from controller.execution.outcomes import Outcome
from controller.execution.reconciler import list_live
from controller.model.actual import MANAGED_KEY
from controller.planning.plan import plan
from tests.executor.support import IMAGE_V1, IMAGE_V2, desired, world

NONCE = "fly-machine-lease-nonce"
UNMANAGED = {"app": "web", "region": "ams", "config": {"image": "registry.fly.io/hand-made:v1"}}


async def test_suspicious_empty_list_is_confirmed_by_a_relist_before_creating() -> None:
    """An empty list after a pass that saw 3 machines is re-listed; nothing is duplicated."""
    async with world() as w:
        first = await w.reconcile(desired())
        assert first.plan is not None
        assert first.plan.managed_count == 0
        count = len(w.machines())
        w.emulator.add_fault(
            {"method": "GET", "path": r"/machines$", "status": 200, "body": []}
        )  # Fly's 2026 bug: an empty list for a deployed app
        mark = w.mark()
        result = await w.reconcile(desired(), previous_managed_count=count)
        assert result.relisted
        assert result.converged
        assert {r.outcome for r in result.results} == {Outcome.NOOP}
        lists = w.requests("GET", r"/machines$", since=mark)
        assert len(lists) == 3  # the bad answer, then all machines + the managed filter
        assert lists[2]["query"] == {f"metadata.{MANAGED_KEY}": ["true"]}
        assert not w.requests("POST", r"/machines$", since=mark)
        assert len(w.machines()) == count


async def test_listing_ignores_no_machine_and_unmanaged_ones_are_never_touched() -> None:
    """The pass lists every machine: unmanaged ones are reported and left alone."""
    async with world() as w:
        seeded = w.emulator.seed_fixtures({"machines": [UNMANAGED]})["machines"][0]
        result = await w.reconcile(desired(groups={"web": {"regions": {"ams": 1}}}))
        assert result.converged
        assert result.plan is not None
        assert [u.machine_id for u in result.plan.unmanaged] == [seeded["id"]]
        assert w.requests("GET", r"/machines$")[0]["query"] == {}  # no metadata filter
        assert not w.requests(path=rf"/machines/{seeded['id']}")
        assert len(w.machines()) == 2


async def test_scale_down_destroys_the_highest_slot_under_its_lease() -> None:
    """3 -> 2: the highest slot is leased, re-read, then DELETE ?force=true with the nonce."""
    async with world() as w:
        assert (await w.reconcile(desired(groups={"web": {"regions": {"ams": 3}}}))).converged
        victim = w.by_slot()["web-ams-2"][0]["id"]
        mark = w.mark()
        result = await w.reconcile(desired(groups={"web": {"regions": {"ams": 2}}}))
        assert result.converged
        [gone] = result.by_outcome(Outcome.OK)
        assert (gone.action, gone.machine_id, gone.attempts) == ("destroy", victim, 1)
        calls = [
            (e["method"], e["path"].rsplit(victim, 1)[1])
            for e in w.requests(path=victim, since=mark)
        ]
        assert calls[:3] == [("POST", "/lease"), ("GET", ""), ("DELETE", "")]
        [delete] = w.requests("DELETE", rf"/machines/{victim}$", since=mark)
        assert delete["query"] == {"force": ["true"]}
        assert NONCE in delete["headers_present"]
        assert sorted(w.by_slot()) == ["web-ams-0", "web-ams-1"]
        assert w.live_leases() == []


async def test_destroy_refuses_a_machine_that_is_no_longer_managed() -> None:
    """A planned destroy whose machine lost its managed tag since planning is refused."""
    async with world() as w:
        assert (await w.reconcile(desired(groups={"web": {"regions": {"ams": 3}}}))).converged
        smaller = desired(groups={"web": {"regions": {"ams": 2}}})
        stale = plan(smaller, await list_live(w.client, "web"))
        victim = w.by_slot()["web-ams-2"][0]["id"]
        del w.emulator.store.machine("web", victim).config["metadata"][MANAGED_KEY]
        result = await w.executor.execute(stale, smaller)
        [refused] = result.by_outcome(Outcome.REFUSED)
        assert refused.machine_id == victim
        assert not w.requests("DELETE", rf"/machines/{victim}$")
        assert victim in [m["id"] for m in w.machines()]
        assert w.live_leases() == []


async def test_plan_over_the_destroy_budget_is_refused_and_not_run() -> None:
    """Destroying 3 of 4 machines breaks max_destroy 50%: refused, nothing is written."""
    async with world() as w:
        assert (await w.reconcile(desired(groups={"web": {"regions": {"ams": 4}}}))).converged
        mark = w.mark()
        result = await w.reconcile(desired(groups={"web": {"regions": {"ams": 1}}}))
        assert result.refused
        assert not result.converged
        assert [r.outcome for r in result.results].count(Outcome.REFUSED) == 3
        assert "max_destroy" in result.by_outcome(Outcome.REFUSED)[0].message
        assert [e["method"] for e in w.requests(since=mark)] == ["GET"]
        assert len(w.machines()) == 4


async def test_detect_only_app_reports_drift_and_writes_nothing() -> None:
    """detect_only: the pass plans and reports drift but sends no write."""
    async with world() as w:
        assert (await w.reconcile(desired())).converged
        mark = w.mark()
        result = await w.reconcile(desired(image=IMAGE_V2, detect_only=True))
        assert result.plan is not None
        assert len(result.plan.drift) == 3
        assert result.drifted
        assert result.results == ()
        assert {e["method"] for e in w.requests(since=mark)} == {"GET"}
        assert all(m["config"]["image"] == IMAGE_V1 for m in w.machines())


async def test_auth_failure_ends_the_pass_as_fatal_without_writes() -> None:
    """A 401 on listing: a failed, fatal AppResult with the request id; nothing executed."""
    async with world(emulator_token="a-different-token-0123456789") as w:
        result = await w.reconcile(desired())
        assert result.failed
        assert result.fatal
        assert not result.converged
        assert result.error_class == "unauthorized"
        assert result.request_id
        assert "token validation error" in result.message
        assert result.results == ()
        assert [e["method"] for e in w.emulator.requests()] == ["GET"]


async def test_listing_that_keeps_failing_ends_the_pass_cleanly() -> None:
    """Listing 5xx past the client's retries: a failed AppResult, not an exception."""
    async with world() as w:
        w.emulator.add_fault({"method": "GET", "path": r"/machines$", "status": 502, "count": 9})
        result = await w.reconcile(desired())
        assert result.failed
        assert result.error_class == "server_error"
        assert not result.fatal
        assert not w.requests("POST")


async def test_auth_failure_mid_rollout_stops_the_remaining_actions() -> None:
    """A 401 on one update is fatal: later machines are not attempted, nothing else is sent."""
    async with world() as w:
        assert (await w.reconcile(desired())).converged
        first = w.machines()[0]["id"]
        w.emulator.add_fault(
            {"method": "POST", "path": rf"/machines/{first}/lease$", "status": 401}
        )
        mark = w.mark()
        result = await w.reconcile(desired(image=IMAGE_V2))
        assert result.fatal
        outcomes = [(r.machine_id == first, r.outcome, r.error_class) for r in result.results]
        assert outcomes == [
            (True, Outcome.ERROR, "unauthorized"),
            (False, Outcome.ERROR, None),
            (False, Outcome.ERROR, None),
        ]
        assert "not attempted: unauthorized" in result.results[1].message
        assert not w.requests("POST", since=mark, status=201)
