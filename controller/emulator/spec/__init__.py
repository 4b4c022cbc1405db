"""Fly's published OpenAPI spec for the Machines API, as this repository keeps it.

``fly-machines-openapi.json`` is a byte-exact copy of the document Fly served on 2025-03-07
(provenance, checksum and what newer copies add: ``SOURCE.md`` beside it).  It ships with the
package so the emulator, the conformance tests and a user's clone all read the same file, and
nothing outside the repository is needed.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SPEC_PATH = Path(__file__).resolve().with_name("fly-machines-openapi.json")


@cache
def load_spec() -> dict[str, Any]:
    """The parsed spec (cached: callers that modify it must deep-copy it first)."""
    loaded: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded
