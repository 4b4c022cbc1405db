"""The safety rules, checked on the emulator's request log and final state.

Each function returns a list of violations (human-readable strings); :func:`check_all` gathers
them, so a failing chaos example reports every broken rule at once.  The log's ``audit`` field
(``controller/emulator/audit.py``) is the emulator's own knowledge at the moment each request
was handled: whether the nonce matched the live lease, whether ``current_version`` matched.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from tests.chaos.harness import OURS, SECRET, lease_left_to_expire
from tests.e2e.conftest import TOKEN

_MACHINE = re.compile(r"^/v1/apps/[^/]+/machines/(?P<id>[^/]+)(?P<rest>/[^/]+)?$")
#: Machine sub-resources whose POST/DELETE/PATCH changes the machine (the lease has its own rule).
_READS = {"GET"}
NONCE_HEADER = "fly-machine-lease-nonce"


def _kind(entry: dict[str, Any]) -> str | None:
    """``write``, ``lease`` or None (a read, or a request on no single machine)."""
    match = _MACHINE.match(entry["path"])
    if match is None or entry["method"] in _READS:
        return None
    return "lease" if match["rest"] == "/lease" else "write"


def handled(entry: dict[str, Any]) -> bool:
    """The request reached the API (an audit was taken) rather than being answered by a fault."""
    return entry.get("audit") is not None


def _landed(entry: dict[str, Any]) -> bool:
    return entry["dropped"] == "after" or (entry["status"] or 0) < 300


def _destroyed_under_our_lease(log: list[dict[str, Any]]) -> set[str]:
    """Machines a ``DELETE`` destroyed while our lease was live on them."""
    out = set()
    for e in log:
        match = _MACHINE.match(e["path"])
        audit = e.get("audit")
        if match is None or match["rest"] is not None or e["method"] != "DELETE" or not audit:
            continue
        if audit["lease"] == "match" and audit["lease_owner"] == OURS and _landed(e):
            out.add(match["id"])
    return out


def writes_carry_nonce_and_version(log: Iterable[dict[str, Any]]) -> list[str]:
    """Every machine write sent our nonce and ``current_version``; each one that landed held the
    live lease and named the version the machine had.

    One write may find no lease and still be ours to send: a ``DELETE`` that timed out and was
    sent again, whose first copy, delayed, arrives after the second destroyed the machine
    under our lease (a destroy takes the lease with it; the late copy finds the machine
    ``destroying`` and changes nothing).  A ``DELETE`` without a live lease on a machine that
    another ``DELETE`` destroyed under our lease is that copy: the machine had our lease when
    it was destroyed, so no unleased write destroyed it."""
    log = list(log)
    destroyed = _destroyed_under_our_lease(log)
    problems = []
    for e in log:
        if _kind(e) != "write":
            continue
        where = f"#{e['seq']} {e['method']} {e['path']}"
        if NONCE_HEADER not in e["headers_present"]:
            problems.append(f"{where}: no lease nonce sent")
        is_update = _MACHINE.match(e["path"])["rest"] is None and e["method"] == "POST"  # type: ignore[index]
        if is_update and not (e["body"] or {}).get("current_version"):
            problems.append(f"{where}: update without current_version")
        audit = e.get("audit")
        if audit is None:
            continue
        late_copy = (
            e["method"] == "DELETE"
            and audit["lease"] == "none"
            and _MACHINE.match(e["path"])["id"] in destroyed  # type: ignore[index]
        )
        if late_copy:
            pass
        elif audit["lease"] != "match":
            problems.append(f"{where}: written while the lease was {audit['lease']!r}")
        elif audit["lease_owner"] != OURS:
            problems.append(f"{where}: written under {audit['lease_owner']}'s lease")
        if is_update and audit["version"] not in ("match", "stale"):
            problems.append(f"{where}: current_version was {audit['version']!r}")
        if is_update and _landed(e) and audit["version"] != "match":
            problems.append(f"{where}: a stale update landed")
    return problems


def no_unmanaged_machine_touched(log: Iterable[dict[str, Any]]) -> list[str]:
    """No write and no lease request on a machine without ``reconciler/managed``."""
    return [
        f"#{e['seq']} {e['method']} {e['path']}: on an unmanaged machine"
        for e in log
        if _kind(e) is not None and handled(e) and not e["audit"]["managed"]
    ]


def no_foreign_lease_used_or_released(log: Iterable[dict[str, Any]]) -> list[str]:
    """No request ever presented a nonce matching someone else's lease (so none released one)."""
    return [
        f"#{e['seq']} {e['method']} {e['path']}: used {e['audit']['lease_owner']}'s lease"
        for e in log
        if handled(e) and e["audit"]["lease"] == "match" and e["audit"]["lease_owner"] != OURS
    ]


def one_machine_per_slot(state: dict[str, Any], app: str) -> list[str]:
    """No slot, and no launch tag, has two live managed machines."""
    live = [
        m
        for m in state["machines"]
        if m["app"] == app
        and m["state"] != "destroyed"
        and m["config"].get("metadata", {}).get("reconciler/managed")
    ]
    problems = []
    for key in ("reconciler/slot", "reconciler/launch"):
        counts = Counter(m["config"]["metadata"].get(key) for m in live)
        problems += [f"{key}={k}: {n} machines" for k, n in counts.items() if k and n > 1]
    return problems


def no_lease_of_ours_left(state: dict[str, Any], log: list[dict[str, Any]]) -> list[str]:
    """After a run that exited by itself, no lease of ours is live, except one whose release
    was tried and met an injected fault, or whose making request's answer was lost (a dropped
    or timed-out acquisition): that one may only expire by its TTL
    (:func:`~tests.chaos.harness.lease_left_to_expire`)."""
    now = time.time()
    return [
        f"{m['id']}: our lease is live until {m['lease']['expires_at']}, never released"
        for m in state["machines"]
        if m.get("lease")
        and m["lease"]["owner"] == OURS
        and m["lease"]["expires_at"] > now
        and not lease_left_to_expire(log, m["id"])
    ]


def unmanaged_untouched(state: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """Machines without our label are exactly as they were (version and state)."""
    was = {m["id"]: m for m in before["machines"]}
    problems = []
    for m in state["machines"]:
        if m["config"].get("metadata", {}).get("reconciler/managed") or m["id"] not in was:
            continue
        old = was[m["id"]]
        if (m["instance_id"], m["state"]) != (old["instance_id"], old["state"]):
            problems.append(f"{m['id']}: unmanaged machine changed")
    return problems


def no_secret_in(outputs: Iterable[str]) -> list[str]:
    """Neither the token nor a desired-state env value appears in any output."""
    problems = []
    for i, text in enumerate(outputs):
        for secret, name in ((TOKEN, "the API token"), (SECRET, "an env value")):
            if secret in text:
                problems.append(f"output {i}: contains {name}")
    return problems


def check_all(
    log: list[dict[str, Any]],
    state: dict[str, Any],
    before: dict[str, Any],
    app: str,
    outputs: Iterable[str],
    *,
    exited: bool = True,
) -> list[str]:
    """Every rule at once (``exited``: every run ended by itself, so no lease of ours remains)."""
    problems = [
        *writes_carry_nonce_and_version(log),
        *no_unmanaged_machine_touched(log),
        *no_foreign_lease_used_or_released(log),
        *one_machine_per_slot(state, app),
        *unmanaged_untouched(state, before),
        *no_secret_in(outputs),
    ]
    if exited:
        problems += no_lease_of_ours_left(state, log)
    return problems
