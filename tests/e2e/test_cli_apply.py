"""``apply`` as a user runs it: a subprocess against ``machine-reconciler emulator`` on a
loopback port, asserting exit codes, output, the emulator's final state and its request log."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import FAST, ONE_RETRY, TOKEN, control, copy_examples, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """A copy of the shipped examples, checks every 1 s (acme-web: 6 machines, acme-jobs: 3)."""
    return copy_examples(tmp_path / "desired")


@pytest.fixture
def url(emulator_url: str) -> str:
    """A served emulator with both apps and Fly's behaviour, boot/check delays shortened."""
    served = emulator_url
    control(served, "PATCH", "/behaviour", FAST)
    control(served, "POST", "/seed", {"apps": [{"name": "acme-web"}, {"name": "acme-jobs"}]})
    return served


def live(url: str, app: str) -> list[dict[str, Any]]:
    """Machines of ``app`` that are not destroyed, from the emulator's own state."""
    state = control(url, "GET", "/state")
    return [m for m in state["machines"] if m["app"] == app and m["state"] != "destroyed"]


def live_leases(url: str) -> list[dict[str, Any]]:
    """Leases still valid now, whoever holds them."""
    state = control(url, "GET", "/state")
    now = time.time()
    return [
        m["lease"] for m in state["machines"] if m.get("lease") and m["lease"]["expires_at"] > now
    ]


def test_apply_converges_then_plan_is_empty(desired: Path, url: str) -> None:
    """apply --yes creates every slot (exit 0), leaves no lease; the next plan has no changes."""
    result = run_cli("apply", str(desired), "--yes", url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "converged" in result.stdout
    assert len(live(url, "acme-web")) == 6
    assert len(live(url, "acme-jobs")) == 3
    assert not live_leases(url), "every lease was released"
    creates = [
        e
        for e in control(url, "GET", "/requests")
        if e["method"] == "POST" and e["path"].endswith("/machines")
    ]
    # Fly's create limit (1/s, burst 3 per app) is on: a 429 is retried, never a duplicate.
    assert len([e for e in creates if e["status"] == 200]) == 9
    assert {e["status"] for e in creates} <= {200, 429}
    assert all(e["body"]["lease_ttl"] > 0 for e in creates)
    assert all(e["body"]["config"]["metadata"]["reconciler/launch"] for e in creates)

    again = run_cli("plan", str(desired), "--detailed-exitcode", url=url)
    assert again.returncode == 0, again.stdout
    assert "No changes." in again.stdout


def test_update_sends_nonce_and_current_version(desired: Path, url: str) -> None:
    """A changed image rolls out as leased updates carrying current_version and the nonce."""
    assert run_cli("apply", str(desired), "--yes", "--app", "acme-jobs", url=url).returncode == 0
    control(url, "DELETE", "/requests")
    jobs = desired / "acme-jobs.yaml"
    jobs.write_text(jobs.read_text().replace("acme-jobs:2025.01.3", "acme-jobs:2025.02.0"))
    result = run_cli("apply", str(desired), "--yes", "--app", "acme-jobs", url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    log = control(url, "GET", "/requests")
    updates = [
        e
        for e in log
        if e["method"] == "POST" and "/machines/" in e["path"] and e["path"].count("/") == 5
    ]
    assert len(updates) == 3
    for update in updates:
        assert "fly-machine-lease-nonce" in update["headers_present"]
        assert update["body"]["current_version"]
    assert {m["config"]["image"] for m in live(url, "acme-jobs")} == {
        "registry.fly.io/acme-jobs:2025.02.0"
    }
    assert not live_leases(url)


def test_broken_file_for_one_app_is_partial_after_applying_the_other(
    desired: Path, url: str
) -> None:
    """acme-web's file is broken: acme-jobs still converges; exit 3; acme-web untouched."""
    web = desired / "acme-web.yaml"
    web.write_text(web.read_text().replace("regions:", "regoins:", 1))
    result = run_cli("apply", str(desired), "--yes", url=url)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "acme-web.yaml:" in result.stderr
    assert len(live(url, "acme-jobs")) == 3
    assert live(url, "acme-web") == []
    assert run_cli("validate", str(desired), url=url).returncode == 1


def test_capacity_in_one_region_is_partial_and_the_rest_converges(desired: Path, url: str) -> None:
    """No room in sin: that slot is blocked (exit 3); ams and iad converge."""
    control(url, "PATCH", "/behaviour", {"region_capacity_mb": {"sin": 0}})
    result = run_cli("apply", str(desired), "--yes", "--app", "acme-web", url=url)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "capacity" in result.stdout
    regions = sorted(m["region"] for m in live(url, "acme-web"))
    assert regions == ["ams", "ams", "iad", "iad", "iad"]


def test_lease_held_past_lease_wait_exits_4_and_is_never_stolen(desired: Path, url: str) -> None:
    """Someone else holds a machine's lease for 60 s; --lease-wait 1 gives up with exit 4."""
    assert run_cli("apply", str(desired), "--yes", "--app", "acme-jobs", url=url).returncode == 0
    victim = live(url, "acme-jobs")[0]
    control(
        url,
        "POST",
        "/external-writers",
        {"kind": "hold_lease", "app": "acme-jobs", "machine_id": victim["id"], "seconds": 60},
    )
    jobs = desired / "acme-jobs.yaml"
    jobs.write_text(jobs.read_text().replace("LOG_LEVEL: warn", "LOG_LEVEL: info"))
    result = run_cli(
        "apply", str(desired), "--yes", "--app", "acme-jobs", "--lease-wait", "1", url=url
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "lease" in result.stdout
    leases = live_leases(url)
    assert [lease["owner"] for lease in leases] == ["someone-else@fly.io"], "not stolen"


def test_safety_budget_refuses_mass_destroy(desired: Path, url: str) -> None:
    """Scaling acme-web from 6 to 1 machine destroys more than half: refused, exit 4."""
    assert run_cli("apply", str(desired), "--yes", "--app", "acme-web", url=url).returncode == 0
    web = desired / "acme-web.yaml"
    text = web.read_text()
    shrunk = text.replace("regions: {ams: 2, iad: 2, sin: 1}", "regions: {ams: 1}")
    assert shrunk != text, "the example's web regions line changed; update this test"
    web.write_text(shrunk)
    result = run_cli("apply", str(desired), "--yes", "--app", "acme-web", url=url)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "refused" in result.stdout
    assert len(live(url, "acme-web")) == 6
    assert not [
        e
        for e in control(url, "GET", "/requests")
        if e["method"] == "DELETE" and e["path"].count("/") == 5
    ]


def test_apply_without_yes_off_a_terminal_writes_nothing(desired: Path, url: str) -> None:
    """Non-interactive apply without --yes refuses with a hint (exit 1) and only reads."""
    result = run_cli("apply", str(desired), url=url)
    assert result.returncode == 1
    assert "--yes" in result.stderr
    assert {e["method"] for e in control(url, "GET", "/requests")} == {"GET"}


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_secrets_never_reach_the_output_even_at_debug(desired: Path, url: str, method: str) -> None:
    """An env secret and the token echoed back by the API (on a create that carried them, or on
    a list that did not) stay out of stdout and stderr, even at DEBUG."""
    secret = "redis://:hunter2-queue-password@queue.internal:6379/0"
    status = 400 if method == "POST" else 500
    fault = {
        "method": method,
        "path": "/apps/acme-jobs/machines$",
        "count": 10,
        "status": status,
        "body": {"error": f"invalid env QUEUE_URL={secret} token={TOKEN}"},
    }
    control(url, "POST", "/faults", fault)
    result = run_cli(
        "--log-level",
        "DEBUG",
        "apply",
        str(desired),
        "--yes",
        "--app",
        "acme-jobs",
        url=url,
        ACME_QUEUE_URL=secret,
        **ONE_RETRY,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert ("bad_request" if method == "POST" else "server_error") in output
    assert "hunter2" not in output
    assert TOKEN not in output
    assert "DEBUG" in result.stderr, "debug logging was on"
