"""Scenario files for ``machine-reconciler emulator --scenario FILE`` (YAML or JSON).

A scenario uses the control API's shapes and is applied once at start-up::

    seed: 7                      # rng seed (reseeds the emulator)
    behaviour: {boot_seconds: 0.5, region_capacity_mb: {iad: 4096}}
    fixtures:                    # as POST /_emulator/seed (a mapping under "seed" works too)
      apps: [{name: web}]
      machines: [{app: web, config: {image: "nginx:1.25"}, state: stopped}]
    faults:                      # as POST /_emulator/faults
      - {method: POST, path: "/machines$", count: 1, status: 503}
    external_writers: []         # as POST /_emulator/external-writers
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.emulator.external import ExternalWriterSpec
from controller.emulator.faults import FaultSpec
from controller.emulator.seeding import SeedSpec
from controller.emulator.state import EmulatorState


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = None
    behaviour: dict[str, Any] = Field(default_factory=dict)
    fixtures: SeedSpec | None = None
    faults: list[FaultSpec] = Field(default_factory=list)
    external_writers: list[ExternalWriterSpec] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _seed_as_fixtures(cls, data: Any) -> Any:
        """Accept ``seed: {apps, machines, volumes}`` as the fixtures block."""
        if isinstance(data, dict) and isinstance(data.get("seed"), dict):
            if "fixtures" in data:
                raise ValueError("give fixtures either under 'seed' or under 'fixtures'")
            data = {**data, "fixtures": data["seed"]}
            del data["seed"]
        return data


def load_scenario(path: Path) -> Scenario:
    """Parse a scenario file (``.json`` as JSON, anything else as YAML)."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    return Scenario.model_validate(data or {})


def apply_scenario(emulator: EmulatorState, scenario: Scenario) -> dict[str, Any]:
    """Reseed, set behaviour, then add fixtures, faults and writers; returns seeded ids."""
    if scenario.seed is not None:
        emulator.reset(seed=scenario.seed)
    if scenario.behaviour:
        emulator.patch_behaviour(scenario.behaviour)
    seeded: dict[str, Any] = {}
    if scenario.fixtures is not None:
        seeded = emulator.seed_fixtures(scenario.fixtures)
    for fault in scenario.faults:
        emulator.add_fault(fault)
    for writer in scenario.external_writers:
        emulator.external_writer(writer)
    return seeded
