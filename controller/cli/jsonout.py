"""``--output json`` for the commands that change machines (``adopt``, ``restart``).

One rule for both, so that a program can drive them as it drives ``plan --output json``:

* stdout carries exactly one JSON document, printed when the command ends: ``plan``'s
  document (``controller/planning/plan-output.schema.json``, the same ``machines`` records),
  with what was proposed, plus ``results`` (one record per machine the command acted on:
  ``outcome`` from the outcome table of :mod:`controller.core.outcomes`) once it ran;
* everything meant for a person goes to stderr: the text proposal, the confirmation question,
  the progress lines and the summary table.

A command that could not list its app prints a document whose ``errors`` names it (as ``plan``
does), and exits 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from controller.execution.outcomes import MachineResult

__all__ = ["emit", "from_result", "result_record"]


def result_record(
    *,
    app: str,
    action: str,
    machine_id: str | None,
    slot: str | None,
    group: str | None,
    region: str | None,
    outcome: str,
    message: str = "",
    error_class: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """One ``results`` record: how one machine's action ended (no config, no secret)."""
    return {
        "app": app,
        "action": action,
        "machine_id": machine_id,
        "slot": slot,
        "group": group,
        "region": region,
        "outcome": outcome,
        "message": message,
        "error_class": error_class,
        "request_id": request_id,
    }


def from_result(result: MachineResult, redact: Callable[[str], str] = str) -> dict[str, Any]:
    """The ``results`` record of one executor result."""
    return result_record(
        app=result.app,
        action=result.action,
        machine_id=result.machine_id,
        slot=result.slot,
        group=result.group,
        region=result.region,
        outcome=result.outcome.value,
        message=redact(result.message),
        error_class=result.error_class,
        request_id=result.request_id,
    )


def emit(document: dict[str, Any], results: Sequence[dict[str, Any]] | None = None) -> None:
    """Print ``document`` on stdout, with the ``results`` records when the command acted."""
    if results is not None:
        document["results"] = list(results)
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
