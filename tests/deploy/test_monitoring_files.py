"""The Prometheus rules and the Grafana dashboard shipped in helm/machine-reconciler/files/:
the rules checked and unit-tested with the real ``promtool`` (one test per alert, each firing on
a synthetic series), the chart's PrometheusRule rendered from the same file, and every query of
the dashboard naming a metric (and labels) the daemon exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from prometheus_client import Counter, Gauge, Histogram

from controller.observability.metrics import Metrics
from tests.deploy.conftest import CHART_DIR, NAMESPACE, only, render_chart

FILES = CHART_DIR / "files"
RULES = FILES / "prometheus-rules.yaml"
RULE_TESTS = FILES / "prometheus-rules.test.yaml"
DASHBOARD = FILES / "grafana-dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found: `make promtool` installs Debian's prometheus"
)


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _alerts(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in groups for r in g["rules"]}


@needs_promtool
def test_promtool_checks_the_rules_file() -> None:
    result = _promtool("check", "rules", str(RULES), cwd=FILES)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_fire_every_alert() -> None:
    """promtool test rules passes, and there is a firing test for every alert in the file."""
    result = _promtool("test", "rules", RULE_TESTS.name, cwd=FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == set(_alerts(yaml.safe_load(RULES.read_text())["groups"]))


@needs_promtool
def test_a_broken_rule_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: with the AlertFiring threshold raised, promtool reports it."""
    broken = RULES.read_text().replace('machine-reconciler"}) > 0', 'machine-reconciler"}) > 5')
    assert broken != RULES.read_text()
    (tmp_path / RULES.name).write_text(broken)
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "MachineReconcilerAlertFiring" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def rendered_groups(chart: helm.Chart) -> list[dict[str, Any]]:
    values = {
        "prometheusRule": {"enabled": True, "errorRateThreshold": 0.4, "staleAfterSeconds": 600}
    }
    docs = render_chart(chart, values)["docs"]
    groups: list[dict[str, Any]] = only(docs, "PrometheusRule")["spec"]["groups"]
    return groups


def test_the_chart_renders_the_rules_file(rendered_groups: list[dict[str, Any]]) -> None:
    """Same alerts, annotations and durations; only the job/namespace scope and the two
    thresholds differ."""
    mine = _alerts(yaml.safe_load(RULES.read_text())["groups"])
    theirs = _alerts(rendered_groups)
    assert set(theirs) == set(mine)
    scope = f'job="mr-machine-reconciler",namespace="{NAMESPACE}"'
    for name, rule in mine.items():
        got = theirs[name]
        assert got["annotations"] == rule["annotations"]
        assert got["for"] == rule["for"]
        assert got["labels"] == rule["labels"]
        expected = rule["expr"].replace('job="machine-reconciler"', scope)
        expected = {
            "MachineReconcilerStale": expected.replace("> 300", "> 600"),
            "MachineReconcilerErrorRate": expected.replace("> 0.25", "> 0.4"),
        }.get(name, expected)
        assert got["expr"] == expected


@needs_promtool
def test_promtool_checks_the_rendered_rules(
    rendered_groups: list[dict[str, Any]], tmp_path: Path
) -> None:
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump({"groups": rendered_groups}))
    result = _promtool("check", "rules", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _exported() -> dict[str, set[str]]:
    """Every sample name the daemon exports, with its label names (from the collectors of a
    fresh :class:`Metrics`; the label names are not in the public API of prometheus-client)."""
    out: dict[str, set[str]] = {}
    for collector in vars(Metrics()).values():
        if not isinstance(collector, Counter | Gauge | Histogram):
            continue
        name, labels = collector._name, set(collector._labelnames)
        if isinstance(collector, Counter):
            out[name.removesuffix("_total") + "_total"] = labels
        elif isinstance(collector, Histogram):
            out[name + "_bucket"] = labels | {"le"}
            out[name + "_sum"] = out[name + "_count"] = labels
        else:
            out[name] = labels
    return out


def _queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_every_dashboard_query_names_an_exported_metric_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = _exported()
    assert "app" in exported["machine_reconciler_reconcile_runs_total"]
    assert "app" in exported["machine_reconciler_actions_total"]
    assert "app" in exported["machine_reconciler_alerts_firing"]
    queries = _queries(dashboard)
    assert len(queries) >= 12
    for query in queries:
        names = re.findall(r"\bmachine_reconciler_[a-z_]+", query)
        assert names, query
        for name in names:
            assert name in exported, (name, query)
        # every label a selector or a grouping uses exists on the metric(s) it applies to
        for name, selector in re.findall(r"(machine_reconciler_[a-z_]+)\{([^}]*)\}", query):
            for label in re.findall(r"([a-z_]+)\s*[=!~]", selector):
                assert label in exported[name] | {"job"}, (label, name)
        for grouping in re.findall(r"by \(([^)]*)\)", query):
            labels = {g.strip() for g in grouping.split(",")}
            assert any(labels <= exported[n] | {"job"} for n in names), (grouping, query)
    panel_ids = [p["id"] for p in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))
