"""What ``--group`` and pause markers leave of the selected apps, for the CLI (the flags
themselves are declared with the parser, :mod:`controller.cli.commands`).

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

__all__ = ["targeted"]


def targeted(apps: Sequence[DesiredApp], args: argparse.Namespace) -> list[DesiredApp]:
    """``apps`` narrowed to ``args.group`` and paused by markers in ``args.dir``."""
    groups: list[str] = list(getattr(args, "group", None) or ())
    missing = unknown_groups(apps, groups)
    if missing:
        raise ConfigError(f"no selected app declares group(s): {', '.join(missing)}")
    directory = Path(args.dir)
    return [pause(narrow_groups(app, groups), marker_reason(directory, app.app)) for app in apps]
