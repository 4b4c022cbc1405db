"""Every error class and every retry path of the client, against the emulator over loopback HTTP.

Conditions are produced by the emulator's behaviour (capacity, quota, leases, volumes, versions)
wherever it models them, and by its scripted faults only for what cannot be provoked otherwise
(5xx, dropped connections, a 429 with a chosen Retry-After).  The client sleeps on a FakeClock,
so ``fake_clock.sleeps`` is the exact retry schedule it chose.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime

import anyio
import httpx
import pytest
from fleet import machine_config
from pydantic import SecretStr

from controller.core.errors import (
    BadRequest,
    ConnectionDropped,
    FlyAPIError,
    GatewayTimeout,
    InsufficientCapacity,
    LeaseHeld,
    LeaseNotFound,
    NotFound,
    QuotaExceeded,
    RateLimited,
    ServerError,
    Unauthorized,
    VersionConflict,
    VolumeInUse,
    WaitTimeout,
)
from controller.core.retry import Cooldown, GiveUp, Replan, Requeue, classify
from controller.flyapi import MachinesClient, RateLimits
from controller.testing import FakeClock
from tests.integration.conftest import TOKEN, Served, fast_behaviour


def machines_in(served: Served, app: str) -> list[dict[str, object]]:
    """Live machines of ``app`` as the emulator holds them (not through the client)."""
    return [m for m in served.state.machines(app) if m["state"] != "destroyed"]


async def test_lease_held_by_another_names_holder_and_expiry(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """409 on lease acquire -> LeaseHeld with holder and expiry; classify says requeue after it."""
    machine = await api.create_machine(app_name, config=machine_config())
    served.control(
        "POST",
        "/external-writers",
        {"kind": "hold_lease", "app": app_name, "machine_id": machine.id, "seconds": 30},
    )
    with pytest.raises(LeaseHeld) as caught:
        await api.acquire_lease(app_name, machine.id, ttl=15)
    exc = caught.value
    assert exc.status == 409
    assert exc.holder == "someone-else@fly.io"
    assert exc.expires_at is not None
    remaining = (exc.expires_at - datetime.now(UTC)).total_seconds()
    assert 25 <= remaining <= 31
    assert exc.request_id
    decision = classify(exc, now=time.time())
    assert isinstance(decision, Requeue)
    assert 25 <= decision.after <= 31

    with pytest.raises(LeaseHeld):  # a write without the nonce is refused too
        await api.update_machine(app_name, machine.id, config=machine_config(env={"A": "1"}))
    served.assert_spec_clean()


async def test_stale_current_version_is_a_version_conflict(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """An outside writer bumps the version between our read and write -> VersionConflict."""
    machine = await api.create_machine(app_name, config=machine_config())
    served.control(
        "POST",
        "/external-writers",
        {"kind": "bump_version", "app": app_name, "machine_id": machine.id},
    )
    with pytest.raises(VersionConflict) as caught:
        await api.update_machine(
            app_name, machine.id, config=machine_config(), current_version=machine.version
        )
    assert isinstance(classify(caught.value), Replan)
    after = await api.get_machine(app_name, machine.id)
    assert after.version != machine.version, "the outside write landed, ours did not"
    assert after.config["env"]["EMULATOR_EXTERNAL_BUMP"]
    served.assert_spec_clean()


@pytest.fixture
def behaviour() -> object:
    """Room for two 256 MB machines in ams, unlimited elsewhere; an org limit of 4 machines."""
    return fast_behaviour(region_capacity_mb={"ams": 512}, org_machine_limit=4)


async def test_region_capacity_on_create_and_on_update(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """422 insufficient_capacity on create and 409 capacity text on update -> one class."""
    first = await api.create_machine(app_name, config=machine_config(), region="ams")
    await api.create_machine(app_name, config=machine_config(), region="ams")
    with pytest.raises(InsufficientCapacity) as on_create:
        await api.create_machine(app_name, config=machine_config(), region="ams")
    assert on_create.value.status == 422
    assert on_create.value.envelope.status == "insufficient_capacity"
    with pytest.raises(InsufficientCapacity) as on_update:
        await api.update_machine(
            app_name,
            first.id,
            config=machine_config(memory_mb=1024),
            current_version=first.version,
        )
    assert on_update.value.status == 409
    decision = classify(on_update.value)
    assert isinstance(decision, Cooldown)
    assert decision.condition == "capacity"
    assert decision.after >= 30
    # other regions still have room: the condition is per region
    await api.create_machine(app_name, config=machine_config(), region="iad")
    served.assert_spec_clean()


async def test_org_machine_limit_is_a_quota(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """422 'reached its machine limit' -> QuotaExceeded, a cooldown condition."""
    for _ in range(4):
        await api.create_machine(app_name, config=machine_config(), region="iad")
    with pytest.raises(QuotaExceeded) as caught:
        await api.create_machine(app_name, config=machine_config(), region="iad")
    assert caught.value.status == 422
    decision = classify(caught.value)
    assert isinstance(decision, Cooldown)
    assert decision.condition == "quota"
    served.assert_spec_clean()


async def test_volume_attached_elsewhere_is_volume_in_use(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """412 volume_placement_capacity -> VolumeInUse, permanent for this spec."""
    seeded = served.control(
        "POST", "/seed", {"volumes": [{"app": app_name, "name": "data", "region": "iad"}]}
    )
    volume = seeded["volumes"][0]["id"]
    mounts = [{"volume": volume, "path": "/data"}]
    await api.create_machine(app_name, config=machine_config(mounts=mounts), region="iad")
    with pytest.raises(VolumeInUse) as caught:
        await api.create_machine(app_name, config=machine_config(mounts=mounts), region="iad")
    assert caught.value.status == 412
    assert isinstance(classify(caught.value), GiveUp)
    served.assert_spec_clean()


async def test_wait_timeout_is_408_and_out_of_range_timeouts_are_clamped(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """/wait for a state that never comes -> 408 WaitTimeout; timeouts go out clamped to 1..60."""
    machine = await api.create_machine(app_name, config=machine_config(), skip_launch=True)
    with pytest.raises(WaitTimeout) as caught:
        await api.wait_machine(
            app_name, machine.id, state="started", version=machine.version, timeout=0.2
        )
    assert caught.value.status == 408
    waits = [e for e in served.log() if e["path"].endswith("/wait")]
    assert waits[-1]["query"]["timeout"] == ["1"]
    served.assert_spec_clean()


async def test_not_found_and_lease_not_found(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """Unknown machine -> NotFound; no lease -> LeaseNotFound; releasing twice is harmless."""
    with pytest.raises(NotFound):
        await api.get_machine(app_name, "0123456789abcd")
    machine = await api.create_machine(app_name, config=machine_config())
    with pytest.raises(LeaseNotFound):
        await api.get_lease(app_name, machine.id)
    lease = await api.acquire_lease(app_name, machine.id, ttl=15)
    assert lease.nonce is not None
    await api.release_lease(app_name, machine.id, nonce=lease.nonce)
    with pytest.raises(LeaseNotFound):
        await api.release_lease(app_name, machine.id, nonce=lease.nonce)
    served.assert_spec_clean()


async def test_bad_request_is_permanent(api: MachinesClient, app_name: str, served: Served) -> None:
    """400 (region is immutable on update) -> BadRequest; classify gives up."""
    machine = await api.create_machine(app_name, config=machine_config(), region="iad")
    served.control(
        "POST",
        "/faults",
        {
            "method": "POST",
            "path": f"/machines/{machine.id}$",
            "status": 400,
            "body": {"error": "invalid config.guest.cpus: must be positive"},
        },
    )
    with pytest.raises(BadRequest) as caught:
        await api.update_machine(app_name, machine.id, config=machine_config())
    assert "must be positive" in str(caught.value)
    assert isinstance(classify(caught.value), GiveUp)


async def test_wrong_token_is_unauthorized(served: Served, fake_clock: FakeClock) -> None:
    """401 -> Unauthorized (fatal); neither token appears in the error."""
    async with httpx.AsyncClient(base_url=served.url) as http:
        client = MachinesClient(
            http, token=SecretStr("wrong-token-abcdef"), clock=fake_clock, rng=random.Random(1)
        )
        with pytest.raises(Unauthorized) as caught:
            await client.get_app("acme-web")
    decision = classify(caught.value)
    assert isinstance(decision, GiveUp)
    assert decision.fatal
    assert "wrong-token-abcdef" not in str(caught.value) + repr(caught.value)


async def test_5xx_on_reads_is_retried_with_backoff_then_succeeds(
    api: MachinesClient, app_name: str, served: Served, fake_clock: FakeClock
) -> None:
    """Two 503s on GET machine are retried (>= 1 s, growing) and the third attempt succeeds."""
    machine = await api.create_machine(app_name, config=machine_config())
    served.control(
        "POST",
        "/faults",
        {"method": "GET", "path": f"/machines/{machine.id}$", "count": 2, "status": 503},
    )
    fake_clock.sleeps.clear()
    got = await api.get_machine(app_name, machine.id)
    assert got.id == machine.id
    assert len(fake_clock.sleeps) == 2
    assert all(s >= 1.0 for s in fake_clock.sleeps)
    gets = [e for e in served.log() if e["method"] == "GET" and e["path"].endswith(machine.id)]
    assert [e["status"] for e in gets] == [503, 503, 200]
    served.assert_spec_clean()


async def test_504_backs_off_at_least_ten_seconds(
    api: MachinesClient, app_name: str, served: Served, fake_clock: FakeClock
) -> None:
    """A 504 is retried no sooner than 10 s (DESIGN.md 6)."""
    machine = await api.create_machine(app_name, config=machine_config())
    served.control(
        "POST", "/faults", {"method": "GET", "path": f"/machines/{machine.id}$", "status": 504}
    )
    fake_clock.sleeps.clear()
    await api.get_machine(app_name, machine.id)
    assert len(fake_clock.sleeps) == 1
    assert fake_clock.sleeps[0] >= 10.0


async def test_5xx_exhausted_raises_server_error_with_request_id(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """Past the attempt limit the last ServerError surfaces, carrying fly-request-id."""
    served.control(
        "POST", "/faults", {"method": "GET", "path": "/machines$", "count": 50, "status": 502}
    )
    with pytest.raises(ServerError) as caught:
        await api.list_machines(app_name)
    assert not isinstance(caught.value, GatewayTimeout)
    assert caught.value.status == 502
    assert caught.value.request_id
    lists = [e for e in served.log() if e["method"] == "GET" and e["path"].endswith("/machines")]
    assert len(lists) == 4, "the default policy makes 4 attempts"


async def test_429_honours_retry_after_as_a_floor(
    api: MachinesClient, app_name: str, served: Served, fake_clock: FakeClock
) -> None:
    """429 with Retry-After: 7 -> the client waits at least 7 s, then succeeds."""
    served.control(
        "POST",
        "/faults",
        {
            "method": "GET",
            "path": "/machines$",
            "status": 429,
            "headers": {"retry-after": "7"},
            "body": {"error": "rate limit exceeded"},
        },
    )
    fake_clock.sleeps.clear()
    assert await api.list_machines(app_name) == []
    assert len(fake_clock.sleeps) == 1
    assert fake_clock.sleeps[0] >= 7.0


async def test_real_rate_limit_surfaces_as_rate_limited(
    served: Served, app_name: str, api: MachinesClient
) -> None:
    """With Fly's per-machine limits on and client pacing off, a burst ends in RateLimited."""
    machine = await api.create_machine(app_name, config=machine_config())
    served.control("PATCH", "/behaviour", {"rate_limits": True})

    refused: list[RateLimited] = []

    async def get_once() -> None:
        try:
            await api.get_machine(app_name, machine.id)
        except RateLimited as exc:
            refused.append(exc)

    # All at once, so the burst exceeds Fly's 10 however slowly this machine validates requests.
    async with anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(get_once)
    assert refused, "30 simultaneous reads of one machine must exceed the burst of 10"
    assert all(exc.status == 429 and exc.retry_after is not None for exc in refused)


async def test_dropped_connection_on_read_is_retried(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """A reset mid-response on a GET is retried transparently."""
    machine = await api.create_machine(app_name, config=machine_config())
    served.control(
        "POST", "/faults", {"method": "GET", "path": f"/machines/{machine.id}$", "drop": "after"}
    )
    assert (await api.get_machine(app_name, machine.id)).id == machine.id


async def test_create_is_never_blindly_retried_after_a_dropped_response(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """A create whose response is lost raises ConnectionDropped; the machine exists exactly once."""
    served.control("POST", "/faults", {"method": "POST", "path": "/machines$", "drop": "after"})
    with pytest.raises(ConnectionDropped):
        await api.create_machine(
            app_name, config=machine_config(metadata={"reconciler/launch": "L1"})
        )
    creates = [e for e in served.log() if e["method"] == "POST" and e["path"].endswith("/machines")]
    assert len(creates) == 1, "create is not retried by the client"
    assert len(machines_in(served, app_name)) == 1, "the silent success committed the machine"
    found = await api.list_machines(app_name, metadata={"reconciler/launch": "L1"})
    assert len(found) == 1, "the launch tag finds it, so the executor can adopt it"


async def test_create_is_not_retried_on_5xx(
    api: MachinesClient, app_name: str, served: Served
) -> None:
    """503 on create surfaces at once (ambiguous: Fly may have committed it)."""
    served.control("POST", "/faults", {"method": "POST", "path": "/machines$", "status": 503})
    with pytest.raises(ServerError):
        await api.create_machine(app_name, config=machine_config())
    creates = [e for e in served.log() if e["method"] == "POST" and e["path"].endswith("/machines")]
    assert len(creates) == 1


async def test_token_and_env_values_never_leak_into_errors_or_logs(
    api: MachinesClient, app_name: str, served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """Errors and DEBUG logs from every failure path carry neither the token nor env values."""
    secret_env = "hunter2-super-secret-value"
    caplog.set_level(logging.DEBUG)
    machine = await api.create_machine(app_name, config=machine_config())
    served.control(
        "POST",
        "/faults",
        {
            "method": "POST",
            "path": f"/machines/{machine.id}$",
            "status": 400,
            "body": {"error": f"bad env value {secret_env}"},
        },
    )
    served.control(
        "POST", "/faults", {"method": "GET", "path": "/machines$", "count": 50, "status": 500}
    )
    errors: list[FlyAPIError] = []
    for call in (
        api.update_machine(app_name, machine.id, config=machine_config(env={"S": secret_env})),
        api.list_machines(app_name),
        api.get_machine(app_name, "ffffffffffffff"),
    ):
        try:
            await call
        except FlyAPIError as exc:
            errors.append(exc)
    assert len(errors) == 3
    text = " ".join(f"{e} {e!r} {e.envelope}" for e in errors) + " " + repr(api)
    text += " ".join(r.getMessage() for r in caplog.records)
    assert TOKEN not in text
    assert secret_env not in text


async def test_client_never_leaks_httpx_exceptions(served: Served, fake_clock: FakeClock) -> None:
    """A refused connection becomes our ConnectFailed (a FlyAPIError), not an httpx error."""
    async with httpx.AsyncClient(base_url="http://127.0.0.1:9") as http:
        client = MachinesClient(
            http,
            token=SecretStr(TOKEN),
            clock=fake_clock,
            rng=random.Random(1),
            limits=RateLimits.disabled(),
        )
        with pytest.raises(FlyAPIError) as caught:
            await client.get_app("x")
    assert not isinstance(caught.value, httpx.HTTPError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
