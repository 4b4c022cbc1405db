"""Pause markers: a file ``paused/<app>`` in the desired-state directory pauses that app.

An operator about to fix an app by hand (``fly machine update`` during an incident) creates the
marker, and neither the daemon nor ``apply`` reverts the fix until the marker is removed.  The
marker is read when an app is about to be planned, not cached, so creating it takes effect at
the next pass without a reload.  The loader never reads ``paused/`` as desired state (it is not
recursive).  The file's content is ignored (a note for colleagues is welcome).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PAUSED_DIR", "marker_reason", "paused_by_marker"]

PAUSED_DIR = "paused"


def paused_by_marker(directory: Path, app: str) -> bool:
    """Whether ``directory/paused/<app>`` exists (a file, or anything else by that name)."""
    if not app or "/" in app or app.startswith("."):
        return False
    return (directory / PAUSED_DIR / app).exists()


def marker_reason(directory: Path, app: str) -> str | None:
    """The pause reason the marker gives ``app``, or None when there is no marker."""
    if paused_by_marker(directory, app):
        return f"marker {directory / PAUSED_DIR / app}"
    return None
