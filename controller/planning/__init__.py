"""Planning, pure: canonical configs, the planner, and the plan's renderings.

Owns :mod:`~controller.planning.normalize` (the one table of what Fly rewrites in a config),
:mod:`~controller.planning.plan` (``plan(desired, live) -> AppPlan``) and
:mod:`~controller.planning.render` (terraform-like text and stable JSON).

May import: :mod:`controller.model` and :mod:`controller.core`.  No I/O, no clock, no logging,
no YAML: the same inputs always give the same plan.
"""
