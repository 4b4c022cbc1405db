"""An in-memory emulator of the Fly.io Machines API, for tests, demos and benchmarks.

It follows ``controller/flyapi/FLY_API.md`` (cited by section in the modules): apps, machines with
versions and timed state transitions on an injected clock, full-replacement updates with
server-filled defaults, ``current_version`` checks, leases in both envelopes, ``/wait`` with its 60
s cap and 408s, metadata filters and cursor pagination, region capacity and org quotas, volumes,
per-action rate limits, and fault injection (statuses, latency, dropped connections, outside
writers) driven through a ``/_emulator/`` control API. It works on plain JSON and imports nothing
from the controller except ``controller.clock`` and the region list, so a misreading of the API
cannot be shared between client and fake.

Request bodies and query strings are decoded as Fly's Go server decodes them, driven by the saved
spec's schemas (``decoding``); creates are limited to Fly's region list (``regions``, data from
``controller.model.regions``, the one other import).

Module map: ``app`` (build_app) -> ``pipeline`` (request ids, log, faults, auth, limits) ->
``routes`` (``decoding`` first) / ``control`` -> ``machines``, ``apps``, ``volumes``, ``secrets``,
``leases``, ``listing``, ``capacity``, ``regions``, ``lifecycle`` over ``store`` and ``model``;
``configs`` (defaults table), ``views`` (JSON shapes),
``ids``, ``behaviour``, ``faults``, ``ratelimit``, ``requestlog``, ``external``, ``seeding``,
``scenario``; ``transport`` and ``server`` for running it.
"""

from controller.emulator.app import build_app
from controller.emulator.behaviour import Behaviour
from controller.emulator.pipeline import ConnectionDropped
from controller.emulator.scenario import Scenario, apply_scenario, load_scenario
from controller.emulator.server import run_server, serve_in_thread
from controller.emulator.state import EmulatorState
from controller.emulator.transport import EmulatorTransport

__all__ = [
    "Behaviour",
    "ConnectionDropped",
    "EmulatorState",
    "EmulatorTransport",
    "Scenario",
    "apply_scenario",
    "build_app",
    "load_scenario",
    "run_server",
    "serve_in_thread",
]
