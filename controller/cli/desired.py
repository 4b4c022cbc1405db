"""The desired-state directory as the one-shot commands read it, and ``validate``.

:func:`load` prints every file error (file:line:col and field) and registers the files' env
values with the redactor; :func:`selected` and :func:`one_app` pick the ``--app`` apps.  No
API client is imported here: ``validate`` starts without one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from controller.cli.redacting import REDACTOR, error
from controller.core.errors import ConfigError
from controller.loading.loader import LoadResult, load_dir
from controller.model.desired import DesiredApp
from controller.planning.normalize import sensitive_values

__all__ = ["cmd_validate", "load", "one_app", "selected", "unnamed_bad_files"]

EXIT_OK = 0
EXIT_ERROR = 1


def load(directory: Path) -> LoadResult:
    """Load ``directory``, printing its errors; a missing directory is a :class:`ConfigError`."""
    if not directory.is_dir():
        raise ConfigError(f"desired-state directory not found: {directory}")
    loaded = load_dir(directory)
    REDACTOR.update(sensitive_values(loaded.apps.values()))
    for problem in loaded.errors:
        print(str(problem), file=sys.stderr)
    return loaded


def unnamed_bad_files(loaded: LoadResult) -> list[str]:
    """Files with errors that name no app (empty, a list, unreadable, not UTF-8), labelled."""
    claimed = {file for files in loaded.blocked.values() for file in files}
    bad = sorted({e.file for e in loaded.errors} - claimed)
    return [f"{Path(file).name} (no app name)" for file in bad]


def selected(loaded: LoadResult, names: Sequence[str] | None) -> list[DesiredApp]:
    """The apps ``names`` (``--app``) selects, every valid app without it; an app no file
    declares is a :class:`ConfigError`."""
    if not names:
        return list(loaded.apps.values())
    unknown = [n for n in names if n not in loaded.apps and n not in loaded.blocked]
    if unknown:
        raise ConfigError(f"no desired-state file declares app(s): {', '.join(unknown)}")
    return [loaded.apps[n] for n in names if n in loaded.apps]


def one_app(args: argparse.Namespace) -> DesiredApp:
    """The ``--app`` of a one-app command (``adopt``, ``restart``); a bad file is an error."""
    loaded = load(args.dir)
    if args.app in loaded.blocked:
        raise ConfigError(f"the desired-state file of app {args.app} is invalid")
    [desired] = selected(loaded, [args.app])
    return desired


def cmd_validate(args: argparse.Namespace) -> int:
    """``validate``: 0 when every file is valid, 1 otherwise (the errors are printed)."""
    loaded = load(args.dir)
    if not loaded.ok:
        blocked = ", ".join(sorted(loaded.blocked)) or "(unnamed)"
        error(f"{len(loaded.errors)} error(s); blocked app(s): {blocked}")
        return EXIT_ERROR
    print(f"ok: {len(loaded.apps)} app(s) in {len(loaded.files)} file(s)")
    return EXIT_OK
