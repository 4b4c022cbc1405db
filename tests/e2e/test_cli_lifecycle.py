"""Issue 10, from demo to production, as a user runs it (CLI subprocesses against a served
emulator, or the embedded one): ``plan --embedded`` on a new file, ``org:`` creating a missing
app, ``state: started | stopped``, rolling restarts and per-machine volumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import EXAMPLES, FAST, control, run_cli

pytestmark = pytest.mark.e2e

NEW_APP = """\
app: fresh-app
{extra}
groups:
  web:
    regions: {{ams: 2}}
    config:
      image: registry.fly.io/fresh-app:v1
    update: {{max_unavailable: 1, smoke_period: 0}}
{group_extra}
"""


def write_app(directory: Path, extra: str = "", group_extra: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "fresh-app.yaml"
    path.write_text(NEW_APP.format(extra=extra, group_extra=group_extra))
    return directory


@pytest.fixture
def url(emulator_url: str) -> str:
    served = emulator_url
    control(served, "PATCH", "/behaviour", FAST)
    return served


def live(url: str, app: str) -> list[dict[str, Any]]:
    state = control(url, "GET", "/state")
    return [m for m in state["machines"] if m["app"] == app and m["state"] != "destroyed"]


def writes(url: str) -> list[dict[str, Any]]:
    return [e for e in control(url, "GET", "/requests") if e["method"] != "GET"]


# ------------------------------------------------------------------------------ plan --embedded


def test_plan_embedded_on_a_new_file_plans_creates_only(tmp_path: Path) -> None:
    """A file the demo seeds do not describe gets an empty app: creates, no invented drift."""
    directory = write_app(tmp_path / "desired")
    shutil.copy(EXAMPLES / "acme-web.yaml", directory / "acme-web.yaml")
    result = run_cli(
        "plan", str(directory), "--embedded", "--output", "json", url="http://127.0.0.1:9"
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    fresh = [r for r in document["machines"] if r["app"] == "fresh-app"]
    assert {r["action"] for r in fresh} == {"create"}
    assert len(fresh) == 2
    assert not [r for r in document.get("unmanaged", []) if r.get("app") == "fresh-app"]
    demo = {r["action"] for r in document["machines"] if r["app"] == "acme-web"}
    assert "update" in demo, "the demo's own app still shows its seeded drift"


# ------------------------------------------------------------------------------ org: create app


def test_org_creates_the_missing_app_then_its_machines(tmp_path: Path, url: str) -> None:
    """With org: a missing app is planned as `+ create app` and apply creates it first."""
    directory = write_app(tmp_path / "desired", extra="org: acme")
    shown = run_cli("plan", str(directory), "--detailed-exitcode", url=url)
    assert shown.returncode == 2, shown.stderr
    assert "+ create app fresh-app (org acme)" in shown.stdout
    assert "+ create web-ams-0" in shown.stdout
    assert "Apps to create: 1." in shown.stdout
    as_json = run_cli("plan", str(directory), "--output", "json", url=url)
    document = json.loads(as_json.stdout)
    assert document["apps"][0]["create_app"] == "acme"
    assert document["apps"][0]["status"] == "changes"
    assert {e["method"] for e in control(url, "GET", "/requests")} == {"GET"}, "plan only reads"

    applied = run_cli("apply", str(directory), "--yes", url=url)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    posts = [e["path"] for e in writes(url) if e["method"] == "POST"]
    assert posts[0] == "/v1/apps", "the app is created before its machines"
    state = control(url, "GET", "/state")
    assert next(a for a in state["apps"] if a["name"] == "fresh-app")["org_slug"] == "acme"
    assert len(live(url, "fresh-app")) == 2
    again = run_cli("plan", str(directory), "--detailed-exitcode", url=url)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_missing_app_without_org_is_a_clear_error(tmp_path: Path, url: str) -> None:
    """Without org: the 404 says how to fix it; plan and apply exit 1 and create nothing."""
    directory = write_app(tmp_path / "desired")
    shown = run_cli("plan", str(directory), url=url)
    assert shown.returncode == 1
    assert "app fresh-app not found; create it with `fly apps create`" in shown.stderr
    assert "set org: in the file" in shown.stdout
    applied = run_cli("apply", str(directory), "--yes", url=url)
    assert applied.returncode == 1
    assert "set org: in the file" in applied.stdout + applied.stderr
    assert not writes(url)


# ------------------------------------------------------------------------------ state


def _states(url: str, app: str = "fresh-app") -> list[str]:
    return sorted(m["state"] for m in live(url, app))


def test_group_state_creates_stopped_starts_and_stops_under_a_lease(
    tmp_path: Path, url: str
) -> None:
    """state: stopped creates with skip_launch; started starts them; stopped stops them."""
    control(url, "POST", "/seed", {"apps": [{"name": "fresh-app"}]})
    directory = tmp_path / "desired"
    write_app(directory, group_extra="    state: stopped")
    applied = run_cli("apply", str(directory), "--yes", url=url)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    creates = [e for e in writes(url) if e["path"].endswith("/machines")]
    assert [e["body"].get("skip_launch") for e in creates] == [True, True]
    assert _states(url) == ["created", "created"]

    write_app(directory, group_extra="    state: started")
    shown = run_cli("plan", str(directory), url=url)
    assert shown.stdout.count("▶ start") == 2, shown.stdout
    applied = run_cli("apply", str(directory), "--yes", url=url)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert _states(url) == ["started", "started"]

    write_app(directory, group_extra="    state: stopped")
    before = len(control(url, "GET", "/requests"))
    applied = run_cli("apply", str(directory), "--yes", url=url)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert _states(url) == ["stopped", "stopped"]
    stops = [e for e in control(url, "GET", "/requests")[before:] if e["path"].endswith("/stop")]
    assert len(stops) == 2
    assert all("fly-machine-lease-nonce" in e["headers_present"] for e in stops)
    again = run_cli("plan", str(directory), "--detailed-exitcode", url=url)
    assert again.returncode == 0, again.stdout


# ------------------------------------------------------------------------------ restart


def _apply_fresh(directory: Path, url: str) -> None:
    applied = run_cli("apply", str(directory), "--yes", url=url)
    assert applied.returncode == 0, applied.stdout + applied.stderr


def _restarts(url: str, since: int = 0) -> list[dict[str, Any]]:
    return [e for e in control(url, "GET", "/requests")[since:] if e["path"].endswith("/restart")]


def test_restart_command_rolls_the_group_under_leases_and_paces_429s(
    tmp_path: Path, url: str
) -> None:
    """restart --yes: /restart per running machine with the lease nonce; a 429 is waited out."""
    control(url, "POST", "/seed", {"apps": [{"name": "fresh-app"}]})
    directory = write_app(tmp_path / "desired")
    _apply_fresh(directory, url)
    refused = run_cli("restart", str(directory), "--app", "fresh-app", url=url)
    assert refused.returncode == 1, "off a terminal it needs --yes"
    assert "pass --yes" in refused.stderr
    assert not _restarts(url)

    control(
        url,
        "POST",
        "/faults",
        {
            "method": "POST",
            "path": "/restart$",
            "count": 4,
            "status": 429,
            "headers": {"Retry-After": "0.2"},
            "body": {"error": "rate limited"},
        },
    )
    before = len(control(url, "GET", "/requests"))
    result = run_cli("restart", str(directory), "--app", "fresh-app", "--yes", url=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("↻ restart") == 2
    sent = _restarts(url, before)
    assert len(sent) >= 6, "four 429s were paced and sent again"
    assert {e["status"] for e in sent} >= {429, 200}
    assert all("fly-machine-lease-nonce" in e["headers_present"] for e in sent)
    assert _states(url) == ["started", "started"]


def test_restart_generation_restarts_the_group_once(tmp_path: Path, url: str) -> None:
    """Bumping restart_generation plans ↻ restart; apply restarts and records it; plan is empty."""
    control(url, "POST", "/seed", {"apps": [{"name": "fresh-app"}]})
    directory = tmp_path / "desired"
    write_app(directory, group_extra="    restart_generation: 1")
    _apply_fresh(directory, url)
    assert not _restarts(url), "a create records the generation: nothing to restart"

    write_app(directory, group_extra="    restart_generation: 2")
    shown = run_cli("plan", str(directory), "--output", "json", url=url)
    document = json.loads(shown.stdout)
    assert document["summary"]["restart"] == 2
    text = run_cli("plan", str(directory), url=url).stdout
    assert "↻ restart" in text
    assert "restart_generation 1 -> 2" in text
    before = len(control(url, "GET", "/requests"))
    _apply_fresh(directory, url)
    assert len(_restarts(url, before)) == 2
    metadata = [
        m["config"]["metadata"]["reconciler_restart_generation"] for m in live(url, "fresh-app")
    ]
    assert metadata == ["2", "2"]
    again = run_cli("plan", str(directory), "--detailed-exitcode", url=url)
    assert again.returncode == 0, again.stdout


# ------------------------------------------------------------------------------ volumes

MOUNTS = """\
    mounts:
      - path: /data
        volume: {name: pg_data, size_gb: 3}"""


def _volumes(url: str) -> list[dict[str, Any]]:
    state = control(url, "GET", "/state")
    return [v for v in state.get("volumes", []) if v.get("app") == "fresh-app"]


def test_volumes_one_per_machine_kept_on_scale_down_reused_and_pruned(
    tmp_path: Path, url: str
) -> None:
    """mounts: a volume per slot in its region, attached at create; scale down keeps it
    (a later create reuses it); prune_volumes: true destroys it with its machine."""
    control(url, "POST", "/seed", {"apps": [{"name": "fresh-app"}]})
    directory = tmp_path / "desired"
    write_app(directory, group_extra=MOUNTS)
    shown = run_cli("plan", str(directory), url=url)
    assert shown.stdout.count("+ volume pg_data (3 GB, ams) at /data") == 2, shown.stdout
    _apply_fresh(directory, url)
    machines = live(url, "fresh-app")
    mounted = [m["config"]["mounts"][0] for m in machines]
    assert {m["path"] for m in mounted} == {"/data"}
    assert len({m["volume"] for m in mounted}) == 2, "one volume per machine"
    volumes = {v["id"]: v for v in _volumes(url)}
    assert set(volumes) == {m["volume"] for m in mounted}
    assert {(v["region"], v["size_gb"], v["name"]) for v in volumes.values()} == {
        ("ams", 3, "pg_data")
    }
    again = run_cli("plan", str(directory), "--detailed-exitcode", url=url)
    assert again.returncode == 0, again.stdout

    scaled = (directory / "fresh-app.yaml").read_text().replace("ams: 2", "ams: 1")
    (directory / "fresh-app.yaml").write_text(scaled)
    _apply_fresh(directory, url)
    assert len(live(url, "fresh-app")) == 1
    assert len(_volumes(url)) == 2, "a volume is never destroyed without prune_volumes"

    (directory / "fresh-app.yaml").write_text(scaled.replace("ams: 1", "ams: 2"))
    _apply_fresh(directory, url)
    assert len(_volumes(url)) == 2, "the unattached volume was reused, not a third made"
    assert {m["config"]["mounts"][0]["volume"] for m in live(url, "fresh-app")} == set(volumes)

    pruning = "prune_volumes: true\nmax_destroy: 1.0"
    (directory / "fresh-app.yaml").write_text(
        NEW_APP.format(extra=pruning, group_extra=MOUNTS).replace("ams: 2", "ams: 1")
    )
    shown = run_cli("plan", str(directory), url=url)
    assert "(prune_volumes)" in shown.stdout
    _apply_fresh(directory, url)
    assert len(live(url, "fresh-app")) == 1
    remaining = _volumes(url)
    assert len(remaining) == 1
    assert remaining[0]["id"] == live(url, "fresh-app")[0]["config"]["mounts"][0]["volume"]


def test_a_volume_412_is_explained_and_partial(tmp_path: Path, url: str) -> None:
    """A 412 'volume in use / no room' ends the create as `volume` (exit 3) with the why."""
    control(url, "POST", "/seed", {"apps": [{"name": "fresh-app"}]})
    directory = write_app(tmp_path / "desired", group_extra=MOUNTS)
    control(
        url,
        "POST",
        "/faults",
        {
            "method": "POST",
            "path": "/machines$",
            "count": 10,
            "status": 412,
            "body": {
                "error": "insufficient resources to create new machine with existing volume "
                "'vol_123'",
                "status": "volume_placement_capacity",
            },
        },
    )
    applied = run_cli("apply", str(directory), "--yes", url=url)
    assert applied.returncode == 3, applied.stdout + applied.stderr
    assert "Fly volumes attach to one machine at a time" in applied.stdout
