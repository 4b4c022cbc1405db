"""The normalisation table: Fly's rewrites vanish, real changes stay visible."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from controller.loading.loader import load_file
from controller.model.actual import LiveMachine
from controller.model.desired import DesiredApp, MachineConfig
from controller.planning.normalize import (
    REDACTED,
    RULES,
    FieldChange,
    canonical,
    diff,
    format_path,
    is_sensitive,
    normalize_image,
    passthrough_paths,
    sensitive_paths,
    spec_hash,
)
from controller.planning.plan import NoOp, Update, plan

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _machine(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "machines" / f"{name}.json").read_text())
    return data


@pytest.fixture(scope="module")
def fixture_app() -> DesiredApp:
    """The desired state the recorded payloads were applied from."""
    app, errors = load_file(FIXTURES / "desired" / "acme-fixture.yaml", environ={})
    assert errors == []
    assert app is not None
    return app


def _wire(app: DesiredApp, group: str) -> dict[str, Any]:
    found = app.group(group)
    assert found is not None
    return found.config.to_wire()


# ------------------------------------------------------------------------------ recorded payloads


@pytest.mark.parametrize(
    ("payload", "group"), [("web_started", "web"), ("worker_stopped", "worker")]
)
def test_recorded_payload_equals_desired(fixture_app: DesiredApp, payload: str, group: str) -> None:
    """canonical(desired) == canonical(live config Fly returned after applying it)."""
    live = _machine(payload)["config"]
    assert canonical(_wire(fixture_app, group)) == canonical(live)
    assert live != _wire(fixture_app, group)  # the raw JSON does differ (perpetual-diff bait)


@pytest.mark.parametrize(
    ("payload", "group"), [("web_started", "web"), ("worker_stopped", "worker")]
)
def test_recorded_spec_tag_is_the_desired_hash(
    fixture_app: DesiredApp, payload: str, group: str
) -> None:
    """The stored reconciler/spec tag equals the hash of the canonical desired config."""
    stored = _machine(payload)["config"]["metadata"]["reconciler/spec"]
    assert spec_hash(canonical(_wire(fixture_app, group))) == stored


def test_recorded_payloads_plan_to_nothing(fixture_app: DesiredApp) -> None:
    """A fresh apply followed by plan is empty: every managed machine is a NoOp."""
    live = [
        LiveMachine.from_api(_machine(n))
        for n in ("web_started", "worker_stopped", "flyctl_unmanaged")
    ]
    result = plan(fixture_app, live)
    assert not result.has_changes
    assert all(isinstance(a, NoOp) and not a.stale_spec for a in result.actions)
    assert [u.machine_id for u in result.unmanaged] == ["e784e903a1d428"]


def test_recorded_out_of_band_edit_is_drift(fixture_app: DesiredApp) -> None:
    """`fly machine update --vm-memory 1024` shows as out-of-band drift of that one field."""
    live = [LiveMachine.from_api(_machine(n)) for n in ("web_out_of_band_memory", "worker_stopped")]
    (update,) = plan(fixture_app, live).updates
    assert isinstance(update, Update)
    assert update.drift == "out_of_band"
    assert update.diff == (FieldChange("guest.memory_mb", 1024, 256, False),)
    assert update.current_version == "01JHC0F4K8D2S6H9Q3W7Y1B5NX"


# ------------------------------------------------------------------------------ the rules

BASE: dict[str, Any] = {"image": "registry.fly.io/a:v1"}


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        # server-filled defaults
        ({}, {"guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256}}),
        (
            {"guest": {"memory_mb": 512}},
            {"guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512}},
        ),
        ({"guest": {"cpus": 0}}, {"guest": {"cpus": 1}}),
        ({}, {"restart": {"policy": "on-failure"}}),
        ({}, {"restart": {"policy": "on-failure", "max_retries": 10}}),
        ({"restart": {"policy": "on-failure", "max_retries": 0}}, {"restart": {}}),
        ({}, {"restart": {}}),
        ({}, {"init": {}}),
        ({"init": {"tty": False}}, {"init": {"exec": None, "cmd": [], "tty": False}}),
        # metadata owned by Fly or by the reconciler's identity
        ({}, {"metadata": {"fly_platform_version": "v2", "fly_process_group": "app"}}),
        ({"metadata": {"team": "a"}}, {"metadata": {"team": "a", "reconciler/slot": "w-ams-0"}}),
        # empty is missing
        ({}, {"env": {}, "services": [], "mounts": None, "dns": {}, "checks": {}}),
        ({"services": [{"internal_port": 80, "ports": []}]}, {"services": [{"internal_port": 80}]}),
        (
            {"services": [{"internal_port": 80}]},
            {"services": [{"internal_port": 80, "force_instance_key": None}]},
        ),
        # Go omitempty: zero values vanish
        ({"auto_destroy": False}, {}),
        (
            {"services": [{"internal_port": 80, "ports": [{"port": 80, "force_https": False}]}]},
            {"services": [{"internal_port": 80, "ports": [{"port": 80}]}]},
        ),
        ({"dns": {"skip_registration": False}}, {}),
        # durations re-spelt by Go
        ({"checks": {"h": {"interval": "60s"}}}, {"checks": {"h": {"interval": "1m0s"}}}),
        ({"checks": {"h": {"timeout": "1500ms"}}}, {"checks": {"h": {"timeout": "1.5s"}}}),
        ({"checks": {"h": {"interval": "10s"}}}, {"checks": {"h": {"interval": 10_000_000_000}}}),
        ({"stop_config": {"timeout": "90s"}}, {"stop_config": {"timeout": "1m30s"}}),
        (
            {"services": [{"checks": [{"grace_period": "120s"}]}]},
            {"services": [{"checks": [{"grace_period": "2m0s"}]}]},
        ),
        # autostop: responses use the old booleans
        ({"services": [{"autostop": "off"}]}, {"services": [{"autostop": False}]}),
        ({"services": [{"autostop": "stop"}]}, {"services": [{"autostop": True}]}),
        ({"services": [{"autostop": "off"}]}, {"services": [{}]}),
        # volume attributes reported in mounts
        (
            {"mounts": [{"volume": "vol_1", "path": "/d"}]},
            {
                "mounts": [
                    {
                        "volume": "vol_1",
                        "path": "/d",
                        "name": "data",
                        "encrypted": True,
                        "size_gb": 3,
                    }
                ]
            },
        ),
        # fields we do not manage, deprecated fields, data outside the config
        ({}, {"size": "shared-cpu-1x", "disable_machine_autostart": False}),
        ({}, {"some_future_field": {"x": 1}}),
        ({"image": "nginx"}, {"image": "docker.io/library/nginx:latest"}),
        ({"image": "nginx:1.27"}, {"image": "index.docker.io/library/nginx:1.27"}),
    ],
)
def test_noise_is_normalised_away(desired: dict[str, Any], live: dict[str, Any]) -> None:
    """Each server-side rewrite in the table compares equal to what was sent."""
    sent = {**BASE, **desired}
    returned = {**BASE, **live}
    assert canonical(sent) == canonical(returned)
    assert spec_hash(canonical(sent)) == spec_hash(canonical(returned))


@pytest.mark.parametrize(
    ("desired", "live"),
    [
        ({"guest": {"memory_mb": 512}}, {"guest": {"memory_mb": 256}}),
        ({"guest": {"cpu_kind": "performance", "memory_mb": 2048}}, {"guest": {"memory_mb": 2048}}),
        ({"image": "registry.fly.io/a:v2"}, {}),
        ({"image": "nginx@sha256:" + "a" * 64}, {"image": "nginx@sha256:" + "b" * 64}),
        ({"env": {"A": "1"}}, {"env": {"A": "2"}}),
        ({"env": {"A": "1"}}, {}),
        ({"services": [{"autostart": False}]}, {"services": [{}]}),
        (
            {"services": [{"ports": [{"port": 443, "handlers": ["tls", "http"]}]}]},
            {"services": [{"ports": [{"port": 443, "handlers": ["http", "tls"]}]}]},
        ),
        ({"restart": {"policy": "always"}}, {"restart": {"policy": "on-failure"}}),
        (
            {"restart": {"policy": "on-failure", "max_retries": 3}},
            {"restart": {"policy": "on-failure"}},
        ),
        ({"checks": {"h": {"interval": "10s"}}}, {"checks": {"h": {"interval": "15s"}}}),
        ({"metadata": {"team": "a"}}, {"metadata": {"team": "b"}}),
        ({"metadata": {"team": "a"}}, {}),
        ({"auto_destroy": True}, {}),
        ({"init": {"cmd": ["a"]}}, {"init": {"cmd": ["b"]}}),
        (
            {"mounts": [{"volume": "vol_1", "path": "/d"}]},
            {"mounts": [{"volume": "vol_2", "path": "/d"}]},
        ),
    ],
)
def test_real_changes_stay_visible(desired: dict[str, Any], live: dict[str, Any]) -> None:
    """Differences that matter to the machine are never normalised away."""
    assert canonical({**BASE, **desired}) != canonical({**BASE, **live})


def test_memory_default_follows_the_size() -> None:
    """The memory default scales with CPUs and kind (fly-go presets)."""
    assert canonical({"guest": {"cpus": 2}})["guest"]["memory_mb"] == 512
    perf = canonical({"guest": {"cpu_kind": "performance", "cpus": 2}})
    assert perf["guest"]["memory_mb"] == 4096


def test_restart_defaults_only_for_on_failure() -> None:
    """max_retries defaults to 10 only under the on-failure policy."""
    assert canonical({})["restart"] == {"policy": "on-failure", "max_retries": 10}
    assert canonical({"restart": {"policy": "always"}})["restart"] == {"policy": "always"}


def test_passthrough_fields_are_compared_only_when_declared() -> None:
    """x_passthrough fields are compared (via extra); other unknown fields are not."""
    config = MachineConfig.model_validate(
        {
            "image": "a",
            "x_passthrough": {"containers": [{"name": "c"}]},
            "services": [{"internal_port": 80, "x_passthrough": {"new": 1}}],
        }
    )
    extra = passthrough_paths(config)
    assert extra == frozenset({"containers", "services[].new"})
    wire = config.to_wire()
    same = copy.deepcopy(wire)
    changed = copy.deepcopy(wire)
    changed["services"][0]["new"] = 2
    assert canonical(wire, extra=extra) == canonical(same, extra=extra)
    assert canonical(wire, extra=extra) != canonical(changed, extra=extra)
    assert canonical(wire) == canonical(changed)  # without extra the field is not ours


def test_canonical_does_not_touch_its_input() -> None:
    """canonical returns a fresh dict and leaves the argument unchanged."""
    live = _machine("web_started")["config"]
    before = copy.deepcopy(live)
    canonical(live)
    assert live == before


def test_canonical_tolerates_odd_shapes() -> None:
    """Unexpected types from the API are compared verbatim instead of crashing."""
    odd = {"guest": "shared-cpu-1x", "services": {"not": "a list"}, "env": ["x"], "checks": 3}
    result = canonical(odd)
    assert result["guest"] == "shared-cpu-1x"
    assert result["services"] == {"not": "a list"}


def test_normalize_image() -> None:
    """Docker Hub short names expand; other registries and digests are kept."""
    assert normalize_image("nginx") == "docker.io/library/nginx:latest"
    assert normalize_image("acme/app:1") == "docker.io/acme/app:1"
    assert normalize_image("registry-1.docker.io/acme/app") == "docker.io/acme/app:latest"
    assert normalize_image("registry.fly.io/app:v1") == "registry.fly.io/app:v1"
    assert normalize_image("localhost:5000/app") == "localhost:5000/app:latest"
    digest = "sha256:" + "c" * 64
    assert normalize_image(f"nginx@{digest}") == f"docker.io/library/nginx@{digest}"


def test_spec_hash_is_short_stable_and_order_free() -> None:
    """spec_hash: 16 hex chars of sha256 over sorted-key JSON; key order does not matter."""
    a = {"image": "x", "env": {"A": "1", "B": "2"}}
    b = {"env": {"B": "2", "A": "1"}, "image": "x"}
    assert spec_hash(a) == spec_hash(b)
    assert len(spec_hash(a)) == 16
    assert int(spec_hash(a), 16) >= 0
    assert spec_hash(a) != spec_hash({"image": "y", "env": {"A": "1", "B": "2"}})
    assert spec_hash({}) == "44136fa355b3678a"


def test_every_rule_cites_a_source() -> None:
    """Each entry of the normalisation table says what it does and why we believe it."""
    assert RULES
    for rule in RULES:
        assert rule.path
        assert rule.effect
        assert len(rule.source) > 20


# ------------------------------------------------------------------------------ sensitivity, diff


@pytest.mark.parametrize(
    ("path", "sensitive"),
    [
        ("env.DB_URL", True),
        ("env", True),
        ("processes[0].env.TOKEN", True),
        ("processes[0]", True),
        ("processes[0].cmd", False),
        ("files[2].raw_value", True),
        ("files[2].guest_path", False),
        ("containers[0].env.X", True),
        ("guest.memory_mb", False),
        ("metadata.team", False),
        ("image", False),
    ],
)
def test_is_sensitive(path: str, sensitive: bool) -> None:
    """Env values and inline file contents (and their parents) are sensitive."""
    assert is_sensitive(path) is sensitive


def test_sensitive_paths_lists_concrete_fields() -> None:
    """sensitive_paths names every secret-bearing field present in a config."""
    config = {
        "image": "a",
        "env": {"B": "x", "A": "y"},
        "processes": [{"cmd": ["a"]}, {"env": {"T": "z"}}],
        "files": [
            {"guest_path": "/a", "raw_value": "eA=="},
            {"guest_path": "/b", "secret_name": "S"},
        ],
    }
    assert sensitive_paths(config) == [
        "env.A",
        "env.B",
        "files[0].raw_value",
        "processes[1].env.T",
    ]


def test_diff_reports_leaves_and_redacts_secrets() -> None:
    """diff lists changed leaves by path; sensitive values are replaced, never kept."""
    before = {"guest": {"memory_mb": 256}, "env": {"A": "old-secret"}, "image": "a"}
    after = {
        "guest": {"memory_mb": 512},
        "env": {"A": "new-secret", "B": "b-secret"},
        "services": [{"ports": [{"handlers": ["tls", "http"], "port": 443}]}],
        "image": "a",
    }
    assert diff(before, after) == [
        FieldChange("env.A", REDACTED, REDACTED, True),
        FieldChange("env.B", None, REDACTED, True),
        FieldChange("guest.memory_mb", 256, 512, False),
        FieldChange("services[0].ports[0].handlers", None, ["tls", "http"], False),
        FieldChange("services[0].ports[0].port", None, 443, False),
    ]
    assert "secret" not in repr(diff(before, after))


def test_diff_of_equal_configs_is_empty() -> None:
    """Equal configs have no diff."""
    config = canonical(_machine("web_started")["config"])
    assert diff(config, copy.deepcopy(config)) == []


def test_diff_of_removed_list_items() -> None:
    """Removed list items show as removed leaves."""
    assert diff(
        {"services": [{"internal_port": 1}, {"internal_port": 2}]},
        {"services": [{"internal_port": 1}]},
    ) == [FieldChange("services[1].internal_port", 2, None, False)]


@pytest.mark.parametrize(
    ("parts", "text"),
    [
        (("services", 0, "ports"), "services[0].ports"),
        (("metadata", "reconciler/slot"), "metadata.reconciler/slot"),
        (("metadata", "a.b"), 'metadata["a.b"]'),
        ((), ""),
    ],
)
def test_format_path(parts: tuple[str | int, ...], text: str) -> None:
    """Field paths print dotted, with list indexes and quoted odd keys."""
    assert format_path(parts) == text
