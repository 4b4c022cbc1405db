"""Schemathesis fuzzes the emulator against Fly's spec as the project keeps it (issue #12).

An independent tool generates valid and invalid requests for every operation of the saved spec
and runs all of its checks: no 5xx, status codes, content types and bodies as the spec (made
strict, with the documented deviations of ``tests/support/spec_check.py``) says, valid requests
accepted and invalid ones refused.  The only allowances are the listed deviations, each with its
reason.

Bounded and reproducible: a fixed seed, derandomized generation, a few examples per operation,
no example database; the emulator runs in-process (ASGI) on a fake clock and is re-seeded before
every request, so each request meets the same world (one app, one started machine, one volume).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from spec_check import STATE_STATUSES, Seeded, load_fuzz_spec

from controller.clock import FakeClock
from controller.emulator import Behaviour, EmulatorState, build_app

TOKEN = "fuzz-token-0123456789"
SEEDED = Seeded(
    app="web",
    machine_id="0123456789abcd",
    machine_name="web-1",
    machine_region="iad",
    volume_id="vol_0123456789abcdef",
    volume_size_gb=1,
)
MAX_EXAMPLES = 5

APP = build_app(clock=FakeClock(), seed=12, behaviour=Behaviour(rate_limits=False), token=TOKEN)
EMULATOR: EmulatorState = APP.state.emulator

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 12,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "no-shrink": True,
        },
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "401", "403", "404", "409", "429", *STATE_STATUSES],
            },
        },
    }
)
SCHEMA = schemathesis.openapi.from_dict(load_fuzz_spec(SEEDED), config=CONFIG)
SCHEMA.app = APP


def reseed() -> None:
    """A fresh world before each request: results never depend on what the fuzzer did before."""
    EMULATOR.reset()
    EMULATOR.seed_fixtures(
        {
            "apps": [{"name": SEEDED.app, "org_slug": "personal"}],
            "volumes": [
                {
                    "app": SEEDED.app,
                    "name": "data",
                    "id": SEEDED.volume_id,
                    "region": SEEDED.machine_region,
                    "size_gb": SEEDED.volume_size_gb,
                }
            ],
            "machines": [
                {
                    "app": SEEDED.app,
                    "id": SEEDED.machine_id,
                    "name": SEEDED.machine_name,
                    "region": SEEDED.machine_region,
                    "config": {"image": "registry.fly.io/web:1"},
                }
            ],
        }
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@SCHEMA.parametrize()
def test_emulator_conforms_to_the_spec(case: Any) -> None:
    reseed()
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
