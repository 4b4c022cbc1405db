"""Operating a real fleet, as a user runs it (CLI subprocesses against a served emulator):
``--group`` targeting and ``plan --prune``, pausing, saved plans, and adopting machines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypedDict

import pytest

from tests.e2e.conftest import FAST, control, copy_examples, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def desired(tmp_path: Path) -> Path:
    """A copy of the shipped examples, checks every 1 s (acme-web: web 5 + admin 1; acme-jobs:
    worker 3)."""
    return copy_examples(tmp_path / "desired")


@pytest.fixture
def url(emulator_url: str) -> str:
    served = emulator_url
    control(served, "PATCH", "/behaviour", FAST)
    control(served, "POST", "/seed", {"apps": [{"name": "acme-web"}, {"name": "acme-jobs"}]})
    return served


def live(url: str, app: str) -> list[dict[str, Any]]:
    state = control(url, "GET", "/state")
    return [m for m in state["machines"] if m["app"] == app and m["state"] != "destroyed"]


def groups_of(url: str, app: str) -> list[str]:
    return sorted(m["config"]["metadata"].get("reconciler/group", "-") for m in live(url, app))


def writes(url: str) -> list[dict[str, Any]]:
    return [e for e in control(url, "GET", "/requests") if e["method"] != "GET"]


# ------------------------------------------------------------------------------ targeting


def test_group_targeting_applies_one_group_and_leaves_the_others(desired: Path, url: str) -> None:
    """apply --group admin creates only admin; plan --group shows each group's own changes."""
    result = run_cli(
        "apply", str(desired), "--yes", "--app", "acme-web", "--group", "admin", url=url
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert groups_of(url, "acme-web") == ["admin"]

    admin = run_cli(
        "plan",
        str(desired),
        "--app",
        "acme-web",
        "--group",
        "admin",
        "--detailed-exitcode",
        url=url,
    )
    assert admin.returncode == 0, admin.stdout + admin.stderr
    web = run_cli(
        "plan", str(desired), "--group", "web", "--output", "json", "--detailed-exitcode", url=url
    )
    assert web.returncode == 2, web.stderr
    document = json.loads(web.stdout)
    assert {r["group"] for r in document["machines"] if r["action"] == "create"} == {"web"}
    assert document["summary"]["create"] == 5  # acme-jobs declares no web group: nothing

    typo = run_cli("plan", str(desired), "--group", "wbe", url=url)
    assert typo.returncode == 1
    assert "wbe" in typo.stderr


def test_plan_prune_previews_apply_prune_and_targeting_never_prunes_others(
    desired: Path, url: str
) -> None:
    """admin leaves the file: plan keeps it as an orphan, plan --prune shows its destroy;
    apply --prune --group web never destroys it; apply --prune does."""
    assert run_cli("apply", str(desired), "--yes", "--app", "acme-web", url=url).returncode == 0
    web = desired / "acme-web.yaml"
    text = web.read_text()
    web.write_text(text[: text.index("  admin:")] + text[text.index("prune: false") :])

    kept = run_cli("plan", str(desired), "--app", "acme-web", url=url)
    assert "orphaned managed machines" in kept.stdout
    assert "- destroy" not in kept.stdout
    preview = run_cli("plan", str(desired), "--app", "acme-web", "--prune", url=url)
    assert preview.returncode == 0, preview.stderr
    assert "- destroy" in preview.stdout
    assert "group admin" in preview.stdout
    assert "Plan: 0 to create, 0 to update, 1 to destroy." in preview.stdout

    control(url, "DELETE", "/requests")
    targeted = run_cli(
        "apply", str(desired), "--yes", "--app", "acme-web", "--prune", "--group", "web", url=url
    )
    assert targeted.returncode == 0, targeted.stdout + targeted.stderr
    assert "admin" in groups_of(url, "acme-web")
    assert not [e for e in writes(url) if e["method"] == "DELETE"]

    pruned = run_cli("apply", str(desired), "--yes", "--app", "acme-web", "--prune", url=url)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert "admin" not in groups_of(url, "acme-web")


# ------------------------------------------------------------------------------ pausing


def test_a_paused_app_is_shown_and_skipped_by_plan_and_apply(desired: Path, url: str) -> None:
    """paused/acme-jobs marker: plan says PAUSED and plans nothing; apply writes nothing;
    paused: true in the file does the same."""
    assert run_cli("apply", str(desired), "--yes", "--app", "acme-jobs", url=url).returncode == 0
    jobs = desired / "acme-jobs.yaml"
    jobs.write_text(jobs.read_text().replace("acme-jobs:2025.01.3", "acme-jobs:2025.02.0"))
    (desired / "paused").mkdir()
    (desired / "paused" / "acme-jobs").write_text("bob: debugging a stuck worker\n")

    shown = run_cli("plan", str(desired), "--app", "acme-jobs", "--detailed-exitcode", url=url)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "PAUSED (marker " in shown.stdout
    as_json = run_cli("plan", str(desired), "--app", "acme-jobs", "--output", "json", url=url)
    [entry] = json.loads(as_json.stdout)["apps"]
    assert entry["paused"].startswith("marker ")

    control(url, "DELETE", "/requests")
    applied = run_cli("apply", str(desired), "--yes", "--app", "acme-jobs", url=url)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert writes(url) == []
    assert {m["config"]["image"] for m in live(url, "acme-jobs")} == {
        "registry.fly.io/acme-jobs:2025.01.3"
    }

    (desired / "paused" / "acme-jobs").unlink()
    jobs.write_text(jobs.read_text() + "paused: true\n")
    in_file = run_cli("plan", str(desired), "--app", "acme-jobs", url=url)
    assert "PAUSED (paused: true in the file)" in in_file.stdout
    assert "No changes." in in_file.stdout


# ------------------------------------------------------------------------------ saved plans

QUEUE = "redis://:s3cr3t-queue-pass@queue.internal:6379/0"


class QueueEnv(TypedDict):
    """The extra environment of a CLI run (its keys cannot clash with ``run_cli``'s own)."""

    ACME_QUEUE_URL: str


def test_saved_plan_refuses_a_moved_machine_then_applies_a_fresh_one(
    desired: Path, url: str, tmp_path: Path
) -> None:
    """plan --out; someone bumps one machine; apply --plan refuses (exit 4) naming it and writes
    nothing; plan --out again; apply --plan converges.  The secret never reaches the file."""
    env: QueueEnv = {"ACME_QUEUE_URL": QUEUE}
    first = run_cli("apply", str(desired), "--yes", "--app", "acme-jobs", url=url, **env)
    assert first.returncode == 0, first.stdout + first.stderr
    jobs = desired / "acme-jobs.yaml"
    jobs.write_text(jobs.read_text().replace("acme-jobs:2025.01.3", "acme-jobs:2025.02.0"))
    saved = tmp_path / "jobs.plan.json"
    made = run_cli("plan", str(desired), "--app", "acme-jobs", "--out", str(saved), url=url, **env)
    assert made.returncode == 0, made.stderr
    text = saved.read_text()
    assert QUEUE not in text
    assert "s3cr3t" not in text
    document = json.loads(text)
    assert {a["action"] for a in document["apps"][0]["actions"]} == {"update"}

    victim = live(url, "acme-jobs")[0]["id"]
    control(
        url,
        "POST",
        "/external-writers",
        {"kind": "bump_version", "app": "acme-jobs", "machine_id": victim},
    )
    control(url, "DELETE", "/requests")
    refused = run_cli("apply", str(desired), "--plan", str(saved), url=url, **env)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert f"machine {victim}" in refused.stderr
    assert "changed since the plan" in refused.stderr
    assert writes(url) == []

    again = run_cli("plan", str(desired), "--app", "acme-jobs", "--out", str(saved), url=url, **env)
    assert again.returncode == 0, again.stderr
    applied = run_cli("apply", str(desired), "--plan", str(saved), url=url, **env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert {m["config"]["image"] for m in live(url, "acme-jobs")} == {
        "registry.fly.io/acme-jobs:2025.02.0"
    }
    assert (
        run_cli(
            "plan", str(desired), "--app", "acme-jobs", "--detailed-exitcode", url=url, **env
        ).returncode
        == 0
    )


def test_saved_plan_refuses_a_changed_secret_or_file_naming_the_app(
    desired: Path, url: str, tmp_path: Path
) -> None:
    saved = tmp_path / "plan.json"
    env: QueueEnv = {"ACME_QUEUE_URL": QUEUE}
    made = run_cli("plan", str(desired), "--app", "acme-jobs", "--out", str(saved), url=url, **env)
    assert made.returncode == 0, made.stderr
    rotated = run_cli(
        "apply", str(desired), "--plan", str(saved), url=url, ACME_QUEUE_URL=QUEUE + "-rotated"
    )
    assert rotated.returncode == 4, rotated.stdout + rotated.stderr
    assert "sensitive value of app acme-jobs" in rotated.stderr
    assert QUEUE not in rotated.stderr

    jobs = desired / "acme-jobs.yaml"
    jobs.write_text(jobs.read_text().replace("acme-jobs:2025.01.3", "acme-jobs:2025.02.0"))
    edited = run_cli("apply", str(desired), "--plan", str(saved), url=url, **env)
    assert edited.returncode == 4
    assert "desired state of app acme-jobs changed" in edited.stderr
    assert writes(url) == []

    mixed = run_cli("apply", str(desired), "--plan", str(saved), "--app", "acme-web", url=url)
    assert mixed.returncode == 1
    assert "--plan" in mixed.stderr


# ------------------------------------------------------------------------------ adopting


def test_adopt_takes_over_what_fly_deploy_made_under_a_lease(desired: Path, url: str) -> None:
    """Two machines fly deploy made in iad (one acme-jobs, one database): plan lists the first
    as adoptable; adopt off a terminal needs --yes; adopt --yes writes the slot metadata with
    current_version and the lease nonce; the database is never touched."""
    image = {"image": "registry.fly.io/acme-jobs:2025.01.3", "env": {"LOG_LEVEL": "warn"}}
    seeded = control(
        url,
        "POST",
        "/seed",
        {
            "machines": [
                {"app": "acme-jobs", "region": "iad", "config": image},
                {"app": "acme-jobs", "region": "iad", "config": {"image": "flyio/postgres:16"}},
            ]
        },
    )
    worker, database = (m["id"] for m in seeded["machines"])
    listed = run_cli("plan", str(desired), "--app", "acme-jobs", url=url)
    assert listed.returncode == 0, listed.stderr
    assert (
        f"unmanaged machine {worker} (region iad) can be adopted as worker-iad-0" in listed.stdout
    )
    assert database not in listed.stdout.split("unmanaged machines")[0]
    as_json = run_cli("plan", str(desired), "--app", "acme-jobs", "--output", "json", url=url)
    [record] = json.loads(as_json.stdout)["adoptable"]
    assert (record["machine_id"], record["slot"]) == (worker, "worker-iad-0")

    control(url, "DELETE", "/requests")
    asked = run_cli("adopt", str(desired), "--app", "acme-jobs", url=url)
    assert asked.returncode == 1
    assert "--yes" in asked.stderr
    assert writes(url) == []

    adopted = run_cli("adopt", str(desired), "--app", "acme-jobs", "--yes", url=url)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    assert f"{worker} adopted as worker-iad-0" in adopted.stdout
    assert "the next apply then changes" in adopted.stdout
    machines = {m["id"]: m for m in live(url, "acme-jobs")}
    metadata = machines[worker]["config"]["metadata"]
    assert metadata["reconciler/managed"] == "true"
    assert metadata["reconciler/slot"] == "worker-iad-0"
    assert metadata["reconciler/group"] == "worker"
    assert "reconciler/managed" not in (machines[database]["config"].get("metadata") or {})
    updates = [e for e in writes(url) if e["method"] == "POST" and e["path"].endswith(worker)]
    [update] = updates
    assert update["body"]["current_version"]
    assert "fly-machine-lease-nonce" in update["headers_present"]
    state = control(url, "GET", "/state")
    assert not [m for m in state["machines"] if m.get("lease") and m["id"] == worker]

    after = run_cli("plan", str(desired), "--app", "acme-jobs", url=url)
    assert f"~ update {worker} worker-iad-0" in after.stdout
    assert "Plan: 2 to create, 1 to update, 0 to destroy." in after.stdout
    assert "can be adopted" not in after.stdout
