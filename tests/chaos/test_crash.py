"""kill -9 in the middle of ``apply`` and of a daemon pass, then run again.

After the second run: no duplicate machine, no slot left on a half-applied config (converged,
``plan`` empty), and the killed run's leases were never released or written through: they only
expired by their TTL.  How long they can block the next run is measured and bounded by the TTL
the settings give every lease, creates included (``ExecutorSettings.lease_ttl``, 30 s, refreshed
every 20 s while a machine is worked on), never by a hard-coded number.

A kill at a random moment nearly always lands after the leased machine's write was sent (the
write follows its lease within milliseconds), so the next run has nothing left to do on it and
is not held up.  :func:`test_kill_9_with_an_update_in_flight_the_next_apply_waits_out_the_lease`
makes the other case happen (the update held in the emulator, then dropped unhandled) and
measures how long the next ``apply`` really waits: until the orphaned lease expires, no longer.

``make test`` kills at two fixed moments; ``make chaos`` (``CHAOS_KILLS=n``) at ``n`` random ones.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import pytest

from controller.execution.executor import ExecutorSettings
from tests.chaos import invariants
from tests.chaos.conftest import RANDOM
from tests.chaos.harness import (
    APP,
    OURS,
    World,
    desired_yaml,
    image,
    start_daemon,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

KILLS = int(os.environ.get("CHAOS_KILLS", "1"))
_rng = random.Random(None if RANDOM else 14)
#: Seconds after the second deploy's first write at which the process is killed.
APPLY_KILLS = [round(_rng.uniform(0.0, 2.5), 2) for _ in range(KILLS)]
DAEMON_KILLS = [round(_rng.uniform(0.0, 2.5), 2) for _ in range(KILLS)]
#: Machines boot slowly and roll one at a time, so a kill lands mid-rollout (about 6 s long).
SLOW = {"boot_seconds": 1.5}
#: The group's wait_timeout in these tests (how long an update waits for health): short, so a
#: rollout that goes wrong fails fast.  It has no say in lease TTLs any more.
CRASH_WAIT_TIMEOUT = 20
V2 = {"iad": 3, "ams": 1}


def lease_bound() -> float:
    """The longest a killed run's lease can block the next one: the lease TTL every machine
    operation takes (creates too: ``lease_ttl`` on the create request), refreshed while held."""
    return float(ExecutorSettings().lease_ttl)


def first_write(world: World) -> bool:
    """The deploy under test has sent its first lease or create."""
    return any(e["method"] == "POST" for e in world.emulator.requests())


def write(world: World, version: int, regions: dict[str, int]) -> None:
    text = desired_yaml(version, regions, batch=1).replace(
        "wait_timeout: 60s", f"wait_timeout: {CRASH_WAIT_TIMEOUT}s"
    )
    (world.directory / f"{APP}.yaml").write_text(text)


def orphans(world: World) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Our leases live right after the kill, and the emulator's clock then."""
    state = world.emulator.state()
    now = time.time()
    held = [
        {"machine_id": m["id"], "expires_at": m["lease"]["expires_at"]}
        for m in state["machines"]
        if m.get("lease") and m["lease"]["owner"] == OURS and m["lease"]["expires_at"] > now
    ]
    return held, state["clock"]


def written_through(
    log: list[dict[str, Any]], held: list[dict[str, Any]], clock: dict[str, Any]
) -> list[str]:
    """Requests that got past a killed run's lease before it expired (its nonce died with it)."""
    problems = []
    for lease in held:
        # expires_at is whole seconds: allow one second of rounding.
        expiry = clock["monotonic"] + (lease["expires_at"] - clock["now"]) - 1.0
        for e in log:
            audit = e.get("audit")
            if (
                f"/machines/{lease['machine_id']}" in e["path"]
                and e["method"] != "GET"
                and e["at"] < expiry
                and (e["status"] or 500) < 300
                and e["at"] > clock["monotonic"]
                and audit is not None
            ):
                problems.append(f"#{e['seq']} {e['method']} {e['path']} before the lease expired")
    return problems


def expired_by_ttl_only(state: dict[str, Any], held: list[dict[str, Any]]) -> list[str]:
    """Our only live leases are the killed run's, untouched (same expiry), until their TTL."""
    orphaned = {lease["machine_id"]: lease["expires_at"] for lease in held}
    problems = []
    for m in state["machines"]:
        lease = m.get("lease")
        if not lease or lease["owner"] != OURS or lease["expires_at"] <= time.time():
            continue
        if orphaned.get(m["id"]) != lease["expires_at"]:
            problems.append(f"{m['id']}: a lease of ours is live after the run: {lease}")
    return problems


def check_second_run(
    world: World, before: dict[str, Any], held: list[dict[str, Any]], clock: dict[str, Any]
) -> None:
    emulator = world.emulator
    assert emulator.converged(2, V2, orphans=frozenset(lease["machine_id"] for lease in held))
    assert world.plan_is_empty()
    state = emulator.state()
    problems = [
        *invariants.one_machine_per_slot(state, APP),
        *invariants.unmanaged_untouched(state, before),
        *invariants.no_unmanaged_machine_touched(emulator.requests()),
        *invariants.no_foreign_lease_used_or_released(emulator.requests()),
        *expired_by_ttl_only(state, held),
        *written_through(emulator.requests(), held, clock),
        *invariants.no_secret_in(world.outputs),
    ]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("delay", APPLY_KILLS)
def test_kill_9_mid_apply_then_apply_again(world: World, delay: float) -> None:
    emulator = world.emulator
    emulator.reset(21, **SLOW)
    write(world, 1, {"iad": 2, "ams": 1})
    assert world.apply().returncode == 0
    before = emulator.state()
    emulator.call("DELETE", "/requests")
    write(world, 2, V2)
    proc = world.start("apply", str(world.directory), "--yes")
    wait_until(lambda: first_write(world), 20, "the apply to start writing")
    time.sleep(delay)
    proc.kill()
    output, _ = proc.communicate(timeout=10)
    world.outputs.append(output)
    held, clock = orphans(world)
    assert held, "killed mid-rollout: some lease of ours is orphaned"
    blocked = max((lease["expires_at"] - clock["now"] for lease in held), default=0.0)
    print(f"kill -9 after {delay}s: {len(held)} lease(s) orphaned, blocking up to {blocked:.1f}s")

    again = world.apply("--lease-wait", str(lease_bound() + 10), timeout=lease_bound() + 90)
    took = f"second apply: exit {again.returncode} in {again.seconds:.1f}s"
    print(f"{took}; {waits(world, held, clock)}")
    assert again.returncode == 0, again.output
    assert blocked <= lease_bound() + 1
    assert again.seconds <= lease_bound() + 45, "the orphaned leases block only for their TTL"
    check_second_run(world, before, held, clock)


def lease_taken_again(
    log: list[dict[str, Any]], machine_id: str, after: float
) -> tuple[float, int] | None:
    """When the next run got the lease of ``machine_id`` (emulator clock) and how many of its
    tries were refused before, or None if it never asked for it."""
    tries = [
        e
        for e in log
        if e["method"] == "POST"
        and e["path"].endswith(f"/machines/{machine_id}/lease")
        and e["at"] > after
    ]
    granted = [e for e in tries if (e["status"] or 500) < 300]
    if not granted:
        return None
    refused = sum(1 for e in tries if e["at"] < granted[0]["at"])
    return granted[0]["at"], refused


def waits(world: World, held: list[dict[str, Any]], clock: dict[str, Any]) -> str:
    """How long the next run waited for each orphaned lease (what the report prints)."""
    log = world.emulator.requests()
    said = []
    for lease in held:
        taken = lease_taken_again(log, lease["machine_id"], clock["monotonic"])
        if taken is None:
            said.append(f"{lease['machine_id']}: not needed again (its write had landed)")
        else:
            said.append(
                f"{lease['machine_id']}: leased again {taken[0] - clock['monotonic']:.1f}s "
                f"after the kill ({taken[1]} refused tries)"
            )
    return "; ".join(said)


def test_kill_9_with_an_update_in_flight_the_next_apply_waits_out_the_lease(world: World) -> None:
    """The worst moment for a kill: a machine is leased and its update has not reached Fly.
    The next apply must wait for the orphaned lease (never steal it) and then finish the
    machine: it is blocked for what was left of the TTL (at most ``lease_ttl``), no longer."""
    emulator = world.emulator
    emulator.reset(23, **SLOW)
    write(world, 1, {"iad": 2, "ams": 1})
    assert world.apply().returncode == 0
    before = emulator.state()
    emulator.call("DELETE", "/requests")
    # The first update is held for 10 s, then dropped unhandled: the kill lands while it waits.
    update = {"method": "POST", "path": r"/machines/[^/]+$", "latency": 10, "drop": "before"}
    emulator.call("POST", "/faults", update)
    write(world, 2, V2)
    proc = world.start("apply", str(world.directory), "--yes")
    wait_until(
        lambda: any(e["path"].endswith("/lease") for e in emulator.requests()),
        20,
        "the apply to take a lease",
    )
    time.sleep(2.0)  # the update is now held in the emulator
    proc.kill()
    output, _ = proc.communicate(timeout=10)
    world.outputs.append(output)
    held, clock = orphans(world)
    assert held, "killed mid-update: its lease is orphaned"
    stuck = [
        m["id"]
        for m in emulator.state()["machines"]
        if m["id"] in {lease["machine_id"] for lease in held} and m["config"]["image"] != image(2)
    ]
    assert stuck, "a leased machine still waits for its update"
    blocked = max(lease["expires_at"] - clock["now"] for lease in held)
    emulator.call("DELETE", "/faults")

    again = world.apply("--lease-wait", str(lease_bound() + 10), timeout=lease_bound() + 90)
    assert again.returncode == 0, again.output
    taken = lease_taken_again(emulator.requests(), stuck[0], clock["monotonic"])
    assert taken is not None, "the next apply updated the machine under its own lease"
    waited = taken[0] - clock["monotonic"]
    print(
        f"kill -9 with an update in flight: lease left for {blocked:.1f}s; the next apply got "
        f"it {waited:.1f}s after the kill ({taken[1]} refused tries), exit 0 in "
        f"{again.seconds:.1f}s"
    )
    assert blocked <= lease_bound() + 1
    assert blocked - 2 <= waited <= lease_bound() + 2, "it waited for the TTL, no longer"
    assert again.seconds <= lease_bound() + 45
    check_second_run(world, before, held, clock)


@pytest.mark.parametrize("delay", DAEMON_KILLS)
def test_kill_9_mid_daemon_pass_then_start_again(
    world: World, tmp_path: Path, delay: float
) -> None:
    emulator = world.emulator
    emulator.reset(22, **SLOW)
    write(world, 1, {"iad": 2, "ams": 1})
    assert world.apply().returncode == 0
    before = emulator.state()
    emulator.call("DELETE", "/requests")
    daemon = start_daemon(world.directory, emulator.url, tmp_path / "one.log", "--interval", "60")
    try:
        write(world, 2, V2)
        wait_until(lambda: first_write(world), 20, "the pass to start writing")
        time.sleep(delay)
    finally:
        daemon.kill()
    held, clock = orphans(world)
    assert held, "killed mid-rollout: some lease of ours is orphaned"
    blocked = max((lease["expires_at"] - clock["now"] for lease in held), default=0.0)
    print(f"kill -9 {delay}s into the pass: {len(held)} lease(s) orphaned, up to {blocked:.1f}s")

    started = time.monotonic()
    second = start_daemon(
        world.directory,
        emulator.url,
        tmp_path / "two.log",
        "--interval",
        "5",
        "--lease-wait",
        str(lease_bound() + 10),
    )
    try:
        orphaned = frozenset(lease["machine_id"] for lease in held)
        wait_until(
            lambda: emulator.converged(2, V2, orphans=orphaned),
            lease_bound() + 45,
            "the second daemon",
        )
        converged = time.monotonic() - started
        print(f"second daemon converged in {converged:.1f}s; {waits(world, held, clock)}")
        assert second.stop(30) == 0
    finally:
        second.kill()
    assert blocked <= lease_bound() + 1
    world.outputs += [(tmp_path / "one.log").read_text(), (tmp_path / "two.log").read_text()]
    check_second_run(world, before, held, clock)
