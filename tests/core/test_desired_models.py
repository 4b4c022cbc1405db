"""The desired-state models: validation, merging, the passthrough hatch, durations."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controller.model.desired import (
    DesiredFile,
    DesiredStateInvalid,
    MachineConfig,
    UpdatePolicy,
    deep_merge,
    format_go_duration,
    parse_app,
    parse_go_duration,
)

DESIGN_EXAMPLE: dict[str, Any] = {
    "app": "acme-web",
    "defaults": {
        "config": {
            "image": "registry.fly.io/acme-web:v42",
            "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 512},
            "env": {"LOG_LEVEL": "info"},
        }
    },
    "groups": {
        "web": {
            "regions": {"ams": 2, "iad": 1},
            "config": {
                "services": [
                    {
                        "internal_port": 8080,
                        "protocol": "tcp",
                        "ports": [{"port": 443, "handlers": ["tls", "http"]}],
                    }
                ],
                "checks": {
                    "http": {
                        "type": "http",
                        "port": 8080,
                        "path": "/healthz",
                        "interval": "10s",
                        "timeout": "2s",
                    }
                },
            },
            "update": {"max_unavailable": 1, "wait_timeout": "120s"},
        },
        "worker": {"regions": {"iad": 1}, "config": {"env": {"ROLE": "worker"}}},
    },
    "prune": False,
}


def _doc(**group_config: Any) -> dict[str, Any]:
    return {
        "app": "demo",
        "groups": {"g": {"regions": {"ams": 1}, "config": {"image": "nginx:1", **group_config}}},
    }


def _issues(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(DesiredStateInvalid) as caught:
        parse_app(data)
    return [(i.loc, i.msg) for i in caught.value.issues]


def test_design_example_parses() -> None:
    """The example from DESIGN.md section 2 is a valid desired state."""
    app = parse_app(DESIGN_EXAMPLE)
    assert app.app == "acme-web"
    assert [g.name for g in app.groups] == ["web", "worker"]
    web = app.groups[0]
    assert web.regions == {"ams": 2, "iad": 1}
    assert web.size == 3
    assert web.update.max_unavailable == 1
    assert web.update.wait_timeout == 120.0
    assert app.max_destroy == 0.5
    assert not app.prune
    assert not app.detect_only


def test_defaults_merge_maps_and_replace_lists() -> None:
    """defaults.config merges recursively under the group config; lists replace."""
    data = {
        "app": "demo",
        "defaults": {
            "config": {
                "image": "nginx:1",
                "env": {"A": "1", "B": "2"},
                "guest": {"cpu_kind": "shared"},
                "init": {"cmd": ["a", "b"]},
            }
        },
        "groups": {
            "g": {
                "regions": {"ams": 1},
                "config": {"env": {"B": "3", "C": "4"}, "init": {"cmd": ["c"]}},
            }
        },
    }
    wire = parse_app(data).groups[0].config.to_wire()
    assert wire["env"] == {"A": "1", "B": "3", "C": "4"}
    assert wire["init"] == {"cmd": ["c"]}
    assert wire["guest"] == {"cpu_kind": "shared"}
    assert wire["image"] == "nginx:1"


def test_deep_merge_leaves_inputs_alone() -> None:
    """deep_merge returns new dicts and never mutates its arguments."""
    base = {"a": {"b": 1}, "l": [1]}
    over = {"a": {"c": 2}, "l": [2]}
    assert deep_merge(base, over) == {"a": {"b": 1, "c": 2}, "l": [2]}
    assert base == {"a": {"b": 1}, "l": [1]}


@pytest.mark.parametrize(
    ("config", "loc", "hint"),
    [
        (
            {"guest": {"memry_mb": 512}},
            ("groups", "g", "config", "guest", "memry_mb"),
            "; did you mean 'memory_mb'?",
        ),
        ({"imagee": "x"}, ("groups", "g", "config", "imagee"), "; did you mean 'image'?"),
        (
            {"services": [{"internal_port": 80, "portz": []}]},
            ("groups", "g", "config", "services", 0, "portz"),
            "; did you mean 'ports'?",
        ),
        (
            {"checks": {"hc": {"type": "http", "intervl": "1s"}}},
            ("groups", "g", "config", "checks", "hc", "intervl"),
            "; did you mean 'interval'?",
        ),
        ({"zzzzqqq": 1}, ("groups", "g", "config", "zzzzqqq"), ""),
    ],
)
def test_unknown_fields_are_errors_with_a_suggestion(
    config: dict[str, Any], loc: tuple[str | int, ...], hint: str
) -> None:
    """A misspelt key anywhere in a config is an 'unknown field' error with its path and the
    closest known field names (none when nothing is close)."""
    assert (loc, "unknown field" + hint) in _issues(_doc(**config))


def test_unknown_top_level_key_is_an_error() -> None:
    """Typos at the top of the file (``prunne``) are errors, not ignored; ``region`` for
    ``regions`` in a group gets the suggestion."""
    data = {**_doc(), "prunne": True}
    assert (("prunne",), "unknown field; did you mean 'prune'?") in _issues(data)
    data = _doc()
    data["groups"]["g"]["region"] = data["groups"]["g"].pop("regions")
    assert (("groups", "g", "region"), "unknown field; did you mean 'regions'?") in _issues(data)


@pytest.mark.parametrize("key", ["reconciler/slot", "reconciler/anything", "fly_process_group"])
def test_reserved_metadata_keys_are_rejected(key: str) -> None:
    """User metadata may not use the reconciler's or Fly's key prefixes."""
    issues = _issues(_doc(metadata={key: "x"}))
    assert len(issues) == 1
    loc, msg = issues[0]
    assert loc[:4] == ("groups", "g", "config", "metadata")
    assert "reserved" in msg


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.33, 0.33), (0.5, 0.5), (1, 1), (3, 3), (0.01, 0.01)],
)
def test_max_unavailable_accepts_fractions_and_counts(value: float, expected: float) -> None:
    """max_unavailable: a fraction in (0, 1) or an integer count >= 1."""
    assert UpdatePolicy.model_validate({"max_unavailable": value}).max_unavailable == expected


@pytest.mark.parametrize("value", [0, 0.0, 1.0, 1.5, -1, -0.5, True, "1", None])
def test_max_unavailable_rejects_everything_else(value: object) -> None:
    """Zero, negative, 1.0 (ambiguous), booleans and strings are rejected."""
    with pytest.raises(ValidationError):
        UpdatePolicy.model_validate({"max_unavailable": value})


@pytest.mark.parametrize(
    ("policy", "group", "batch"),
    [(0.33, 3, 1), (0.33, 10, 3), (0.5, 1, 1), (2, 10, 2), (0.25, 100, 25)],
)
def test_batch_size(policy: float, group: int, batch: int) -> None:
    """batch_size turns the policy into a machine count, never below 1."""
    assert UpdatePolicy(max_unavailable=policy).batch_size(group) == batch


@pytest.mark.parametrize(("value", "seconds"), [("120s", 120.0), ("5m", 300.0), (90, 90.0)])
def test_wait_timeout_accepts_durations_and_seconds(value: object, seconds: float) -> None:
    """wait_timeout takes a Go duration or a number of seconds."""
    assert UpdatePolicy.model_validate({"wait_timeout": value}).wait_timeout == seconds


def test_update_policy_defaults() -> None:
    """The rolling policy defaults to 0.33 of the group and a 5 minute wait."""
    policy = UpdatePolicy()
    assert policy.max_unavailable == 0.33
    assert policy.wait_timeout == 300.0


@pytest.mark.parametrize("region", ["AMS", "am", "amsx", "a1s", ""])
def test_bad_region_codes(region: str) -> None:
    """Region codes are three lowercase letters."""
    data = _doc()
    data["groups"]["g"]["regions"] = {region: 1}
    (loc, msg), *_ = _issues(data)
    assert loc[:3] == ("groups", "g", "regions")
    assert "region" in msg


@pytest.mark.parametrize("name", ["Web", "9web", "web_", "web-", "a" * 33, "we b"])
def test_bad_group_names(name: str) -> None:
    """Group names are lowercase, start with a letter, and stay short."""
    data = {"app": "demo", "groups": {name: {"regions": {"ams": 1}, "config": {"image": "x"}}}}
    (loc, msg), *_ = _issues(data)
    assert loc[:2] == ("groups", name)
    assert "group name" in msg


@pytest.mark.parametrize("count", [-1, True, 1.5, "2"])
def test_bad_region_counts(count: object) -> None:
    """A region count is an integer >= 0."""
    data = _doc()
    data["groups"]["g"]["regions"] = {"ams": count}
    assert _issues(data)


def test_image_is_required_after_merge() -> None:
    """A group without an image, here or in defaults, is an error at its config."""
    data = {"app": "demo", "groups": {"g": {"regions": {"ams": 1}}}}
    assert (("groups", "g", "config", "image"), "an image is required (here or in defaults)") in (
        _issues(data)
    )


def test_memory_is_required_for_non_default_sizes() -> None:
    """Guests other than shared-cpu-1x must say memory_mb (Fly's default depends on size)."""
    issues = _issues(_doc(guest={"cpu_kind": "performance", "cpus": 2}))
    assert issues[0][0] == ("groups", "g", "config", "guest", "memory_mb")
    app = parse_app(_doc(guest={"cpu_kind": "shared", "cpus": 1}))
    assert app.groups[0].config.guest is not None


def test_passthrough_is_merged_into_the_wire_config() -> None:
    """x_passthrough fields land verbatim in the object that carries them."""
    app = parse_app(
        _doc(
            x_passthrough={"containers": [{"name": "a"}]},
            services=[{"internal_port": 80, "x_passthrough": {"new_field": True}}],
        )
    )
    wire = app.groups[0].config.to_wire()
    assert wire["containers"] == [{"name": "a"}]
    assert wire["services"] == [{"internal_port": 80, "new_field": True}]
    assert "x_passthrough" not in str(wire)


def test_passthrough_cannot_shadow_modelled_fields() -> None:
    """A passthrough key naming a modelled field is an error (set the field instead)."""
    issues = _issues(_doc(x_passthrough={"image": "other"}))
    assert "modelled" in issues[0][1]


def test_autostop_booleans_become_strings() -> None:
    """autostop true/false (old format, YAML ``off``) is sent as "stop"/"off"."""
    config = MachineConfig.model_validate(
        {"services": [{"autostop": False}, {"autostop": True}, {"autostop": "suspend"}]}
    )
    assert [s["autostop"] for s in config.to_wire()["services"]] == ["off", "stop", "suspend"]


def test_restart_policy_no_survives_yaml_booleans() -> None:
    """YAML 1.1 reads ``policy: no`` as false; it still means the "no" policy."""
    config = MachineConfig.model_validate({"restart": {"policy": False}})
    assert config.to_wire() == {"restart": {"policy": "no"}}


@pytest.mark.parametrize(
    "file",
    [
        {"guest_path": "relative/path", "raw_value": "eA=="},
        {"guest_path": "/etc/x"},
        {"guest_path": "/etc/x", "raw_value": "eA==", "secret_name": "X"},
    ],
)
def test_files_need_an_absolute_path_and_one_source(file: dict[str, Any]) -> None:
    """fly.File needs an absolute guest_path and exactly one of raw_value/secret_name."""
    assert _issues(_doc(files=[file]))


@pytest.mark.parametrize(
    "port", [{}, {"port": 80, "start_port": 1, "end_port": 2}, {"start_port": 1}]
)
def test_ports_need_a_port_or_a_range(port: dict[str, Any]) -> None:
    """A service port is either ``port`` or ``start_port``..``end_port``."""
    assert _issues(_doc(services=[{"internal_port": 80, "ports": [port]}]))


@pytest.mark.parametrize("env", [{"1BAD": "x"}, {"HAS SPACE": "x"}, {"OK": 1}])
def test_env_names_and_values(env: dict[str, Any]) -> None:
    """Env names are identifiers and values are strings (no silent int coercion)."""
    assert _issues(_doc(env=env))


@pytest.mark.parametrize("image", ["", " nginx", "nginx@sha256:abc", "a b"])
def test_bad_images(image: str) -> None:
    """Image references cannot be empty, contain spaces, or carry a malformed digest."""
    assert _issues(_doc(image=image))


def test_models_are_frozen() -> None:
    """Desired-state values cannot be changed after validation."""
    app = parse_app(DESIGN_EXAMPLE)
    with pytest.raises(ValidationError):
        app.prune = True  # type: ignore[misc]


def test_group_lookup() -> None:
    """DesiredApp.group finds a group by name."""
    app = parse_app(DESIGN_EXAMPLE)
    worker = app.group("worker")
    assert worker is not None
    assert worker.regions == {"iad": 1}
    assert app.group("nope") is None


def test_file_model_defaults() -> None:
    """prune and detect_only default off; max_destroy defaults to half."""
    file = DesiredFile.model_validate({"app": "x"})
    assert (file.prune, file.detect_only, file.max_destroy) == (False, False, 0.5)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_max_destroy_is_a_fraction(value: float) -> None:
    """max_destroy is a fraction between 0 and 1."""
    assert _issues({**_doc(), "max_destroy": value})


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("10s", 10_000_000_000),
        ("10000ms", 10_000_000_000),
        ("1m30s", 90_000_000_000),
        ("1.5s", 1_500_000_000),
        ("1h", 3_600_000_000_000),
        ("0", 0),
        ("2us", 2_000),
        ("2µs", 2_000),
        ("3ns", 3),
        ("-1s", -1_000_000_000),
        (".5m", 30_000_000_000),
    ],
)
def test_parse_go_duration(text: str, ns: int) -> None:
    """Go duration strings parse to nanoseconds as time.ParseDuration does."""
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1s2", "1 s", "--1s"])
def test_parse_go_duration_rejects_garbage(text: str) -> None:
    """Strings time.ParseDuration would reject raise ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_go_duration(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (3, "3ns"),
        (1_500, "1.5µs"),
        (2_000_000, "2ms"),
        (1_500_000_000, "1.5s"),
        (60_000_000_000, "1m0s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (5_400_500_000_000, "1h30m0.5s"),
        (-2_000_000_000, "-2s"),
    ],
)
def test_format_go_duration(ns: int, text: str) -> None:
    """Formatting matches Go's time.Duration.String()."""
    assert format_go_duration(ns) == text


def test_durations_in_configs_are_validated() -> None:
    """Check intervals must be valid, non-negative durations."""
    assert _issues(_doc(checks={"hc": {"type": "tcp", "interval": "soon"}}))
    assert _issues(_doc(checks={"hc": {"type": "tcp", "interval": "-1s"}}))


def _with(**top: Any) -> dict[str, Any]:
    return {**_doc(), **top}


@pytest.mark.parametrize("image", ["nginx", "registry.fly.io/acme", "nginx:latest", "h:5000/img"])
def test_images_without_tag_or_digest_are_errors(image: str) -> None:
    """An untagged (or :latest) image is an error naming the fix, unless allow_latest."""
    data = _doc()
    data["groups"]["g"]["config"]["image"] = image
    issues = _issues(data)
    assert [loc for loc, _ in issues] == [("groups", "g", "config", "image")]
    assert "allow_latest: true" in issues[0][1]
    assert parse_app({**data, "allow_latest": True}).groups[0].config.image == image


@pytest.mark.parametrize("image", ["nginx:1.25", "h:5000/img:v2", "nginx@sha256:" + "a" * 64])
def test_pinned_images_are_accepted(image: str) -> None:
    data = _doc()
    data["groups"]["g"]["config"]["image"] = image
    assert parse_app(data).groups[0].config.image == image


def test_unknown_regions_are_errors_with_a_suggestion() -> None:
    """Regions are checked against Fly's list (with its date); allow_unknown_regions opts out."""
    from controller.model.regions import FLY_REGIONS, REGIONS_AS_OF

    assert {"ams", "iad", "sin", "fra"} <= FLY_REGIONS
    data = _doc()
    data["groups"]["g"]["regions"] = {"xyz": 1, "asm": 1}
    issues = dict(_issues(data))
    assert (
        f"unknown Fly region 'xyz' (list as of {REGIONS_AS_OF})"
        in issues[("groups", "g", "regions", "xyz")]
    )
    assert "did you mean 'ams'" in issues[("groups", "g", "regions", "asm")]
    app = parse_app({**data, "allow_unknown_regions": True})
    assert app.groups[0].regions == {"xyz": 1, "asm": 1}
    data["groups"]["g"]["regions"] = {"amss": 1}
    assert "did you mean 'ams'" in _issues(data)[0][1]


def test_env_values_shown_only_when_literal_and_not_secret() -> None:
    """shown_env: literal values are shown; listed, secret-named, credential URLs and
    (unresolved) references are not."""
    data = _doc()
    data["groups"]["g"]["config"]["env"] = {
        "LOG_LEVEL": "info",
        "API_TOKEN": "abc",
        "LISTED": "x",
        "DB_URL": "postgres://u:pw@db",
        "REF": "${ENV:X}",
    }
    data["sensitive"] = ["LISTED"]
    assert parse_app(data).groups[0].shown_env == {"LOG_LEVEL"}
    data["sensitive"] = ["LISTD"]
    assert _issues(data) == [
        (("sensitive", 0), "'LISTD' is not an env name of any group; did you mean 'LISTED'?")
    ]
