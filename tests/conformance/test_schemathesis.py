"""Schemathesis fuzzes the emulator against Fly's spec as the project keeps it (issue #12).

An independent tool generates valid and invalid requests for the operations of the saved spec
(plus the SPEC-NEW ones the emulator serves) and runs all of its checks: no 5xx, status codes,
content types and bodies as the spec says (made strict, with the documented deviations of
``tests/support/spec_check.py``), valid requests accepted and invalid ones refused.  The only
allowances are the listed deviations, each with its reason.

Bounded and reproducible: a fixed seed, derandomized generation, a few examples per operation,
no example database, no shrinking; the emulator runs in-process (ASGI) on a fake clock and is
re-seeded before every request, so each request meets the same world (one app, one started
machine, one volume).
"""

from __future__ import annotations

from typing import Any

import anyio.lowlevel
import schemathesis
from schemathesis.config import SchemathesisConfig
from spec_check import NOT_FUZZED, STATE_STATUSES, Seeded, load_fuzz_spec

from controller.emulator import Behaviour, EmulatorState, build_app
from controller.emulator.spec import load_spec

TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEED = 12
SEEDED = Seeded(
    app="web",
    machine_id="0123456789abcd",
    machine_name="web-1",
    machine_region="iad",
    volume_id="vol_0123456789abcdef",
    volume_size_gb=1,
)
MAX_EXAMPLES = 5
# The machine create and update bodies are the whole fly.MachineConfig tree: the coverage phase
# would spend most of the run on them (a negative case per field), so they get the fuzzing
# phases only, with more examples, which still reach deep into the tree in negative mode.
CONFIG_OPERATIONS = ["Machines_create", "Machines_update"]
CONFIG_EXAMPLES = 20

# schemathesis' default positive_data_acceptance statuses plus STATE_STATUSES (spec_check.py).
CHECKS: dict[str, Any] = {
    "positive_data_acceptance": {
        "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "429", *STATE_STATUSES],
    },
}


class OneRequestClock:
    """Virtual time for an emulator that serves one request at a time.

    schemathesis drives the ASGI app from its own event loop (not the suite's autojump loop),
    sending one request after another, so a sleeper is always alone: jumping straight to its
    deadline is exact.  (controller.testing's clock warns there, rightly, for concurrent code.)
    """

    def __init__(self) -> None:
        self._now = 1_000.0

    def monotonic(self) -> float:
        return self._now

    def now(self) -> float:
        return 1_700_000_000.0 + self._now

    async def sleep(self, seconds: float) -> None:
        self._now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()


APP = build_app(
    clock=OneRequestClock(), seed=SEED, behaviour=Behaviour(rate_limits=False), token=TOKEN
)
EMULATOR: EmulatorState = APP.state.emulator


def _config(max_examples: int, *, coverage: bool) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": max_examples,
                "deterministic": True,
                "database": "none",
                "no-shrink": True,
            },
            "phases": {"coverage": {"enabled": coverage}},
            "checks": CHECKS,
        }
    )


def _schema(config: SchemathesisConfig) -> Any:
    loaded = schemathesis.openapi.from_dict(load_fuzz_spec(SEEDED), config=config)
    loaded.app = APP
    return loaded


SCHEMA = _schema(_config(MAX_EXAMPLES, coverage=True)).exclude(operation_id=CONFIG_OPERATIONS)
DEEP_SCHEMA = _schema(_config(CONFIG_EXAMPLES, coverage=False)).include(
    operation_id=CONFIG_OPERATIONS
)


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


@SCHEMA.parametrize()  # type: ignore[untyped-decorator]  # schemathesis returns a bare Callable
def test_emulator_conforms_to_the_spec(case: Any) -> None:
    reseed()
    case.call_and_validate(headers=AUTH)


@DEEP_SCHEMA.parametrize()  # type: ignore[untyped-decorator]  # schemathesis returns a bare Callable
def test_machine_configs_conform_to_the_spec(case: Any) -> None:
    reseed()
    case.call_and_validate(headers=AUTH)


def test_the_fuzzer_covers_every_served_operation() -> None:
    """Nothing silently left out: each spec operation is fuzzed or listed in NOT_FUZZED."""
    spec_ids = {
        op["operationId"]
        for item in load_spec()["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    fuzzed = {
        result.ok().definition.raw.get("operationId")
        for schema in (SCHEMA, DEEP_SCHEMA)
        for result in schema.get_all_operations()
    }
    assert spec_ids - set(NOT_FUZZED) <= fuzzed
    assert not fuzzed & set(NOT_FUZZED)
