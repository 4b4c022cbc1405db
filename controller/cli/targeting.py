"""``--group`` and ``--prune`` on ``plan``/``apply``, and pause markers, for the CLI.

:func:`targeted` turns the selected apps into what may be planned: narrowed to ``--group``
(an unknown group name is an error, not an empty plan) and paused where the desired-state
directory holds a ``paused/<app>`` marker (:mod:`controller.loading.pausing`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from controller.core.errors import ConfigError
from controller.loading.pausing import marker_reason
from controller.model.desired import DesiredApp
from controller.planning.targeting import narrow_groups, pause, unknown_groups

__all__ = ["add_targeting_arguments", "targeted"]


def add_targeting_arguments(parser: argparse.ArgumentParser, *, prune: bool) -> None:
    """``--group`` (repeatable); with ``prune``, also ``plan --prune`` (a preview of apply's)."""
    parser.add_argument(
        "--group",
        action="append",
        metavar="GROUP",
        help="only this group's machines (repeatable); other groups are left alone",
    )
    if prune:
        parser.add_argument(
            "--prune",
            action="store_true",
            default=None,
            help="preview apply --prune: also destroy managed machines of undeclared groups",
        )


def targeted(apps: Sequence[DesiredApp], args: argparse.Namespace) -> list[DesiredApp]:
    """``apps`` narrowed to ``args.group`` and paused by markers in ``args.dir``."""
    groups: list[str] = list(getattr(args, "group", None) or ())
    missing = unknown_groups(apps, groups)
    if missing:
        raise ConfigError(f"no selected app declares group(s): {', '.join(missing)}")
    directory = Path(args.dir)
    return [pause(narrow_groups(app, groups), marker_reason(directory, app.app)) for app in apps]
