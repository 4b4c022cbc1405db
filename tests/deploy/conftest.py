"""Shared helpers of the deployment-artefact tests: repository paths, the venv's console
script, and rendering the Helm chart with the Helm SDK for Python (no helm binary)."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.e2e.conftest import emulator_url, shared_emulator  # noqa: F401  (fixtures, for test_systemd)

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
CHART_DIR = REPO / "helm" / "machine-reconciler"
DOCKERFILE = REPO / "Dockerfile"
RELEASE = "mr"
NAMESPACE = "fleet"


def pyproject() -> dict[str, Any]:
    """The parsed pyproject.toml."""
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def console_script() -> Path:
    """The ``machine-reconciler`` console script installed next to this interpreter."""
    (name,) = pyproject()["project"]["scripts"]
    script = Path(sys.executable).with_name(name)
    assert script.is_file(), f"{script} is missing: run `pip install -e .`"
    return script


def render_chart(chart: helm.Chart, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Render the chart; returns ``{"docs": [...], "notes": str, "by_template": {...}}``."""
    rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    docs: list[dict[str, Any]] = []
    by_template: dict[str, list[dict[str, Any]]] = {}
    notes = ""
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        parsed = [doc for doc in yaml.safe_load_all(text) if doc]
        by_template[template.rsplit("/", 1)[-1]] = parsed
        docs.extend(parsed)
    return {"docs": docs, "notes": notes, "by_template": by_template}


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single document of ``kind``."""
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['kind'] for d in docs]}"
    return found[0]


def workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment or the StatefulSet (exactly one of them)."""
    found = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, [d["kind"] for d in found]
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The controller's container."""
    containers: list[dict[str, Any]] = workload(docs)["spec"]["template"]["spec"]["containers"]
    (main,) = containers
    return main


@pytest.fixture(scope="session")
def chart() -> Iterator[helm.Chart]:
    """The chart, loaded once by the Helm SDK."""
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded
