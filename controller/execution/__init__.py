"""Execution: applying a plan to Fly Machines, safely, and one reconcile pass per app.

Owns the executor and its per-machine operations (create, update, destroy), leasing, waiting
for a machine to run its new version healthily, the rollout order, the results of applying a
plan, and :mod:`~controller.execution.reconciler` (list, plan, re-list when suspicious,
execute).  It decides *how* to apply a plan, never *what* to do (that is the planner's).

May import: :mod:`controller.flyapi`, :mod:`controller.clock`, :mod:`controller.settings`,
:mod:`controller.planning`, :mod:`controller.model`, :mod:`controller.core`.  Never the
daemon, the CLI, the emulator or the loader.
"""
