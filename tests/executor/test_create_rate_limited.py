"""A 429 on a create is never a failed create (issue 14): Fly did not execute it, so the
executor waits ``Retry-After`` and sends it again, without the re-list an ambiguous failure
needs; if Fly keeps refusing, the create is requeued (partial), not failed."""

from __future__ import annotations

from controller.execution.outcomes import Outcome
from tests.executor.support import desired, world

CREATE = r"/machines$"


async def test_a_429_storm_on_create_is_waited_out_and_converges() -> None:
    """More 429s than the client's own retries: the create still succeeds, once per slot."""
    async with world() as w:
        w.emulator.add_fault(
            {
                "method": "POST",
                "path": CREATE,
                "status": 429,
                "headers": {"retry-after": "3"},
                "count": 5,
            }
        )
        result = await w.reconcile(desired(groups={"web": {"regions": {"ams": 1}}}))
        assert result.converged, [r.describe() for r in result.results]
        assert len(w.requests("POST", CREATE, status=429)) == 5
        assert len(w.requests("POST", CREATE, status=200)) == 1
        assert [len(m) for m in w.by_slot().values()] == [1]
        relists = [e for e in w.requests("GET", CREATE) if "reconciler/launch" in str(e["query"])]
        assert relists == [], "a 429 is not ambiguous: no re-list by launch tag"
        assert w.clock.monotonic() >= 5 * 3.0, "every Retry-After was honoured"


async def test_a_create_refused_with_429_to_the_end_is_requeued_not_failed() -> None:
    """When Fly never stops answering 429 the create is requeued (partial), not an error."""
    async with world() as w:
        w.emulator.add_fault(
            {
                "method": "POST",
                "path": CREATE,
                "status": 429,
                "headers": {"retry-after": "1"},
                "count": 1000,
            }
        )
        result = await w.reconcile(desired(groups={"web": {"regions": {"ams": 1}}}))
        [create] = result.results
        assert create.outcome is Outcome.REQUEUE, create.describe()
        assert not result.failed
        assert w.machines() == []
