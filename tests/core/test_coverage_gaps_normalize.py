"""Edges of the canonical projection that the rule and property tests do not reach.

Closes the branch-coverage gaps of controller/planning/normalize.py for the 95 % floor in
`make test`: durations Fly could not have written, passthrough structure with empties inside,
metadata with null values, a restart policy without retries, quoted paths, and a diff between a
map and a scalar.
"""

from __future__ import annotations

import math

import pytest

from controller.model.flyconfig import MachineConfig
from controller.planning import normalize
from controller.planning.normalize import FieldChange, canonical, diff, is_sensitive


def check(interval: object) -> dict[str, object]:
    return {"image": "nginx", "checks": {"alive": {"type": "http", "interval": interval}}}


@pytest.mark.parametrize(
    ("written", "compared"),
    [
        ("1m0s", "1m0s"),
        ("60s", "1m0s"),
        (60_000_000_000, "1m0s"),  # Go also accepts a number of nanoseconds
        ("soon", "soon"),  # not a Go duration: compared as written, never an exception
        (math.inf, math.inf),  # int(inf) overflows: compared as written
    ],
)
def test_durations_compare_as_go_writes_them_or_as_written(
    written: object, compared: object
) -> None:
    assert canonical(check(written))["checks"]["alive"]["interval"] == compared


def test_passthrough_structure_drops_nulls_and_empties_at_depth() -> None:
    config = {"image": "nginx", "x_custom": {"keep": 1, "gone": None, "empty": {}}}
    assert canonical(config, extra={"x_custom"})["x_custom"] == {"keep": 1}


def test_a_passthrough_list_of_objects_is_projected_item_by_item() -> None:
    config = {"image": "nginx", "x_rules": [{"y": 1, "z": 2}, {"y": None}]}
    assert canonical(config, extra={"x_rules[].y"})["x_rules"] == [{"y": 1}, {}]


def test_null_metadata_values_are_absent() -> None:
    config = {"image": "nginx", "metadata": {"team": "web", "owner": None}}
    assert canonical(config)["metadata"] == {"team": "web"}


def test_a_restart_policy_other_than_on_failure_gets_no_retry_default() -> None:
    assert canonical({"image": "nginx", "restart": {"policy": "always"}})["restart"] == {
        "policy": "always"
    }


def test_quoted_path_segments_are_read_back() -> None:
    assert is_sensitive('env["DB URL"]')
    assert not is_sensitive('metadata["DB URL"]')


def test_a_map_replaced_by_a_scalar_is_one_change() -> None:
    assert diff({"x": {"a": 1}}, {"x": "flat"}) == [FieldChange("x", {"a": 1}, "flat", False)]


@pytest.mark.parametrize("path", ["no_such_field", "services[].no_such_field", "image[]"])
def test_a_rule_naming_a_field_the_model_lacks_fails_at_import(path: str) -> None:
    """RULES paths are resolved without ``create`` when the module loads: a typo is a KeyError."""
    with pytest.raises(KeyError):
        normalize._find(normalize._object_node(MachineConfig), path)
