"""Scenario files applied at start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.emulator import apply_scenario, build_app, load_scenario
from controller.testing import FakeClock

YAML_SCENARIO = """
seed: 7
behaviour:
  boot_seconds: 0.5
  region_capacity_mb: {iad: 4096}
fixtures:
  apps: [{name: web, org_slug: acme}]
  machines:
    - {app: web, config: {image: "nginx:1.25"}, state: stopped, metadata: {role: web}}
faults:
  - {method: POST, path: "/machines$", count: 1, status: 503}
external_writers: []
"""


def test_yaml_scenario_sets_seed_behaviour_fixtures_and_faults(tmp_path: Path) -> None:
    """A YAML scenario reseeds, patches behaviour, seeds the fleet and arms faults."""
    path = tmp_path / "scenario.yaml"
    path.write_text(YAML_SCENARIO)
    app = build_app(clock=FakeClock())
    emulator = app.state.emulator
    seeded = apply_scenario(emulator, load_scenario(path))
    assert emulator.seed == 7
    assert emulator.behaviour.boot_seconds == 0.5
    assert emulator.behaviour.region_capacity_mb == {"iad": 4096}
    assert seeded["machines"][0]["state"] == "stopped"
    assert emulator.machines("web")[0]["config"]["metadata"]["role"] == "web"
    assert [rule.spec.status for rule in emulator.faults.rules()] == [503]


def test_json_scenario_with_seed_mapping_as_fixtures(tmp_path: Path) -> None:
    """A JSON scenario may give the fixtures under "seed"."""
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({"seed": {"apps": [{"name": "api"}]}}))
    app = build_app(clock=FakeClock())
    apply_scenario(app.state.emulator, load_scenario(path))
    assert "api" in app.state.emulator.store.apps


def test_same_scenario_gives_same_ids(tmp_path: Path) -> None:
    """Applying one scenario to two emulators yields identical machine ids and versions."""
    path = tmp_path / "scenario.yaml"
    path.write_text(YAML_SCENARIO)
    runs = []
    for _ in range(2):
        app = build_app(clock=FakeClock(), seed=1)
        runs.append(apply_scenario(app.state.emulator, load_scenario(path)))
    assert runs[0] == runs[1]


def test_unknown_scenario_keys_are_rejected(tmp_path: Path) -> None:
    """Typos in a scenario file fail loudly."""
    path = tmp_path / "scenario.yaml"
    path.write_text("behaviour: {}\nfautls: []\n")
    with pytest.raises(ValidationError):
        load_scenario(path)
