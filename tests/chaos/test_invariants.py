"""The chaos invariants' own edge cases, on hand-written request logs (no processes)."""

from __future__ import annotations

from typing import Any

from tests.chaos import invariants
from tests.chaos.harness import OURS, lease_left_to_expire

MACHINE = "/v1/apps/chaos-web/machines/0123456789abcd"


def entry(
    method: str, path: str, seq: int, *, lease: str = "match", **extra: Any
) -> dict[str, Any]:
    audit = {"lease": lease, "lease_owner": OURS if lease == "match" else None, "managed": True}
    return {
        "seq": seq,
        "method": method,
        "path": path,
        "headers_present": [invariants.NONCE_HEADER],
        "body": None,
        "audit": audit | {"version": None},
        "dropped": None,
        "fault": None,
        "status": 200,
    } | extra


def test_a_late_copy_of_a_destroy_that_landed_under_our_lease_is_not_a_violation() -> None:
    """A DELETE that timed out, was sent again and destroyed the machine under our lease; the
    first copy lands later and finds no lease: it changed nothing."""
    late = entry("DELETE", MACHINE, 1, lease="none", fault="fault-1")
    done = entry("DELETE", MACHINE, 2)
    assert invariants.writes_carry_nonce_and_version([late, done]) == []


def test_a_destroy_without_a_lease_is_a_violation() -> None:
    """The same unleased DELETE with no destroy of ours under a lease is reported."""
    late = entry("DELETE", MACHINE, 1, lease="none")
    refused = entry("DELETE", MACHINE, 2, status=409)
    problems = invariants.writes_carry_nonce_and_version([late, refused])
    assert problems == [f"#1 DELETE {MACHINE}: written while the lease was 'none'"]


def test_a_lease_whose_answer_was_lost_may_be_left_to_expire() -> None:
    """An acquisition dropped after the API made the lease: ours, unknown to us, left to its
    TTL; an acquisition answered normally leaves nothing excused."""
    lease = f"{MACHINE}/lease"
    lost = entry("POST", lease, 1, lease="none", dropped="after", status=None)
    held = entry("POST", lease, 2, status=409)
    assert lease_left_to_expire([lost, held], "0123456789abcd")
    answered = entry("POST", lease, 3, lease="none")
    assert not lease_left_to_expire([lost, held, answered], "0123456789abcd")
