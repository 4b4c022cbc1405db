"""The Helm chart, rendered offline by the Helm SDK for Python (helm-python-sdk; no helm
binary): every document of every value set is checked against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict), the Prometheus Operator objects structurally, the important
fields one by one, `lint`, and the values schema's refusals."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from controller.loading.loader import load_dir
from controller.observability.metrics import Metrics
from tests.deploy.conftest import (
    CHART_DIR,
    NAMESPACE,
    RELEASE,
    REPO,
    container,
    only,
    render_chart,
    workload,
)

FULLNAME = f"{RELEASE}-machine-reconciler"
#: The oldest Kubernetes the sharded StatefulSet supports (pod-index label) and the newest the
#: installed kubernetes-validate knows.
KUBE_VERSIONS = ("1.28.0", kubernetes_validate.utils.latest_version())
EXAMPLE_FILES = {
    p.name: p.read_text(encoding="utf-8") for p in (REPO / "desired_state").glob("*.yaml")
}
SMALL_APP = {
    "app": "tiny",
    "defaults": {"config": {"image": "registry.fly.io/tiny:v1", "guest": {"cpus": 1}}},
    "groups": {"web": {"regions": {"ams": 1}}},
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "sharding": {"sharding": {"enabled": True}, "replicaCount": 3},
    "existing-secret": {
        "apiToken": {"existingSecret": "fly-credentials", "key": "token"},
        "alertWebhook": {"existingSecret": "fly-credentials", "key": "slack"},
    },
    "token-file": {
        "apiToken": {"value": "fo1_not-a-real-token", "mountAs": "file"},
        "alertWebhook": {"url": "https://hooks.example.com/T000/B000"},
    },
    "existing-configmap": {"existingConfigMap": "fleet-desired-state"},
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "alertLabels": {"team": "platform"}},
    },
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                }
            ],
        }
    },
    "watch-off": {"watch": {"enabled": False}, "desiredState": EXAMPLE_FILES},
    "everything": {
        "image": {"repository": "ghcr.io/acme/machine-reconciler", "digest": "sha256:" + "a" * 64},
        "sharding": {"enabled": True},
        "replicaCount": 2,
        "apiToken": {"value": "fo1_not-a-real-token"},
        "alertWebhook": {"url": "https://hooks.example.com/T000/B000"},
        "desiredState": {**EXAMPLE_FILES, "tiny.yml": SMALL_APP},
        "watch": {"enabled": False},
        "settings": {"max_in_flight": 16, "alert_threshold": 5, "watch_interval": 1.5},
        "extraArgs": ["--lease-wait", "90"],
        "extraEnv": [{"name": "ACME_QUEUE_URL", "value": "redis://queue:6379/0"}],
        "podAnnotations": {"example.com/owner": "platform"},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "staleAfterSeconds": 900},
        "networkPolicy": {"enabled": True},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops"}],
    },
}


@pytest.fixture(scope="module")
def rendered(chart: helm.Chart) -> dict[str, dict[str, Any]]:
    """Every value set, rendered once."""
    return {name: render_chart(chart, values) for name, values in VALUE_SETS.items()}


def env_of(main: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's env as name -> EnvVar."""
    return {e["name"]: e for e in main.get("env", [])}


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod template's spec."""
    spec: dict[str, Any] = workload(docs)["spec"]["template"]["spec"]
    return spec


def pod_annotations(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The pod template's annotations."""
    metadata = workload(docs)["spec"]["template"]["metadata"]
    return dict(metadata.get("annotations") or {})


# ---------------------------------------------------------------------- schemas and lint

#: The parts of the Prometheus Operator CRDs (monitoring.coreos.com/v1) the chart uses;
#: kubernetes-validate has no CRD schemas, so these are checked structurally here.
_META = {
    "type": "object",
    "required": ["name", "namespace", "labels"],
    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)(ms|s|m|h|d|w|y))+)$"}
SERVICE_MONITOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["matchLabels"],
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port", "path"],
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {
                                            "type": "string",
                                            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                                        },
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": _DURATION,
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
CRD_SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR, "PrometheusRule": PROMETHEUS_RULE}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_document_validates(rendered: dict[str, dict[str, Any]], value_set: str) -> None:
    """Every rendered document passes `kubernetes-validate --strict` (CRDs: structurally)."""
    docs = rendered[value_set]["docs"]
    assert docs
    for doc in docs:
        assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        if doc["kind"] in CRD_SCHEMAS:
            jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_has_no_errors(value_set: str) -> None:
    """`helm lint --strict` finds no warning or error for the value set."""
    report = helm.lint(CHART_DIR, VALUE_SETS[value_set] or None, strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"replicaCount": 3}, "replicaCount"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"apiToken": {"mountAs": "volume"}}, "mountAs"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"desiredState": {"notes.txt": "x"}}, "notes.txt"),
        ({"reconcile": {"interval": 0}}, "interval"),
        ({"settings": {"api_token": "fo1_x"}}, "api_token"),
        ({"apiUrl": "ftp://api.machines.dev"}, "apiUrl"),
        ({"replicaCuont": 1}, "replicaCuont"),
    ],
)
def test_bad_values_are_rejected(chart: helm.Chart, values: dict[str, Any], needle: str) -> None:
    """values.schema.json refuses the value, naming it, both in validation and in rendering."""
    with pytest.raises(helm.HelmValuesError, match=needle):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_defaults_pass_schema(chart: helm.Chart) -> None:
    """The shipped values.yaml satisfies its own schema and is what the chart loads."""
    chart.validate_schema({})
    chart.validate_schema(yaml.safe_load((CHART_DIR / "values.yaml").read_text()))
    assert chart.values == yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert chart.metadata["appVersion"] == "0.1.0"


# ---------------------------------------------------------------------- important fields


def test_default_deployment(rendered: dict[str, dict[str, Any]]) -> None:
    """One replica, Recreate, probes on /healthz and /readyz, locked-down pod, token from env."""
    docs = rendered["defaults"]["docs"]
    assert sorted(d["kind"] for d in docs) == [
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    main = container(docs)
    assert main["image"] == "machine-reconciler:0.1.0"
    assert main["args"][:2] == ["run", "/etc/machine-reconciler/desired"]
    assert "--shard-index" not in main["args"]
    bind = main["args"][main["args"].index("--health-bind") + 1]
    port = {p["name"]: p["containerPort"] for p in main["ports"]}["http"]
    assert bind == f"0.0.0.0:{port}"
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["resources"]["limits"]["memory"]

    spec = pod_spec(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = main["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False  # no MACHINE_RECONCILER_SERVICE_* variables
    assert spec["terminationGracePeriodSeconds"] > 30  # above the daemon's grace period
    assert spec["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]

    env = env_of(main)
    assert env["FLY_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": FULLNAME,
        "key": "fly-api-token",
    }
    assert env["MACHINE_RECONCILER_API_URL"]["value"] == "https://api.machines.dev"
    assert "MACHINE_RECONCILER_WATCH" not in env
    assert "checksum/desired-state" not in pod_annotations(docs)
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["desired-state"]["mountPath"] == main["args"][1]
    assert mounts["desired-state"]["readOnly"] is True
    assert "/tmp" in {m["mountPath"] for m in main["volumeMounts"]}  # read-only root
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert (
        volumes["desired-state"]["configMap"]["name"] == only(docs, "ConfigMap")["metadata"]["name"]
    )
    # No token given: no Secret, and NOTES say how to create the one the pod waits for.
    notes = rendered["defaults"]["notes"]
    assert f"kubectl -n {NAMESPACE} create secret generic {FULLNAME}" in notes


def test_sharding_statefulset(rendered: dict[str, dict[str, Any]]) -> None:
    """A StatefulSet of replicaCount pods; the pod-index label becomes --shard-index."""
    docs = rendered["sharding"]["docs"]
    assert not [d for d in docs if d["kind"] == "Deployment"]
    sts = only(docs, "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    args = container(docs)["args"]
    assert args[args.index("--shard-index") + 1] == "$(POD_INDEX)"
    assert args[args.index("--shard-count") + 1] == "3"
    env = env_of(container(docs))
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    governing = services[sts["spec"]["serviceName"]]
    assert governing["spec"]["clusterIP"] == "None"
    # Only the metrics Service carries the label the ServiceMonitor selects.
    assert "app.kubernetes.io/component" not in governing["metadata"]["labels"]
    assert services[FULLNAME]["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"


def test_existing_secret(rendered: dict[str, dict[str, Any]]) -> None:
    """With existingSecret the chart renders no Secret and reads token and webhook from it."""
    docs = rendered["existing-secret"]["docs"]
    assert not [d for d in docs if d["kind"] == "Secret"]
    env = env_of(container(docs))
    assert env["FLY_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "fly-credentials",
        "key": "token",
    }
    assert env["MACHINE_RECONCILER_ALERT_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "fly-credentials",
        "key": "slack",
    }
    assert "checksum/secret" not in pod_annotations(docs)
    assert "create secret" not in rendered["existing-secret"]["notes"]


def test_chart_secret_mounted_as_file(rendered: dict[str, dict[str, Any]]) -> None:
    """mountAs=file: the chart's Secret is mounted read-only and named by the token-file env."""
    # ... and the webhook URL (it embeds a secret) never appears in the pod spec.
    docs = rendered["token-file"]["docs"]
    secret = only(docs, "Secret")
    assert base64.b64decode(secret["data"]["fly-api-token"]).decode() == "fo1_not-a-real-token"
    webhook = base64.b64decode(secret["data"]["alert-webhook-url"]).decode()
    main = container(docs)
    env = env_of(main)
    assert "FLY_API_TOKEN" not in env
    token_file = Path(env["MACHINE_RECONCILER_API_TOKEN_FILE"]["value"])
    mount = {m["name"]: m for m in main["volumeMounts"]}["api-token"]
    assert mount["readOnly"] is True
    assert str(token_file.parent) == mount["mountPath"]
    volume = {v["name"]: v for v in pod_spec(docs)["volumes"]}["api-token"]["secret"]
    assert volume["secretName"] == secret["metadata"]["name"]
    assert volume["items"] == [{"key": "fly-api-token", "path": token_file.name}]
    assert webhook not in yaml.safe_dump(workload(docs))
    assert "checksum/secret" in pod_annotations(docs)


def test_existing_configmap(rendered: dict[str, dict[str, Any]]) -> None:
    """existingConfigMap is mounted as the desired state and the chart renders none."""
    docs = rendered["existing-configmap"]["docs"]
    assert not [d for d in docs if d["kind"] == "ConfigMap"]
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["desired-state"]["configMap"]["name"] == "fleet-desired-state"


def test_checksum_only_when_watching_is_off(
    chart: helm.Chart, rendered: dict[str, dict[str, Any]]
) -> None:
    """The ConfigMap checksum annotation is there only when watching is off (and computable)."""
    # Watching off: a change rolls the pod and the daemon is told not to watch.  Watching on
    # (default) or an external ConfigMap: no checksum.
    docs = rendered["watch-off"]["docs"]
    checksum = pod_annotations(docs)["checksum/desired-state"]
    template = chart.render(VALUE_SETS["watch-off"], name=RELEASE, namespace=NAMESPACE)
    configmap_text = template["machine-reconciler/templates/configmap.yaml"]
    assert checksum == hashlib.sha256(configmap_text.encode()).hexdigest()
    assert env_of(container(docs))["MACHINE_RECONCILER_WATCH"]["value"] == "false"

    changed = copy.deepcopy(VALUE_SETS["watch-off"])
    changed["desiredState"]["tiny.yaml"] = SMALL_APP
    other = pod_annotations(render_chart(chart, changed)["docs"])["checksum/desired-state"]
    assert other != checksum

    for name in ("defaults", "monitoring"):
        assert "checksum/desired-state" not in pod_annotations(rendered[name]["docs"])
    external = render_chart(chart, {"watch": {"enabled": False}, "existingConfigMap": "x"})
    assert "checksum/desired-state" not in pod_annotations(external["docs"])
    assert "rollout restart deployment/" in external["notes"]


def test_desired_state_configmap_loads(rendered: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """The ConfigMap's files (text or mapping values) load cleanly with the project's loader."""
    configmap = only(rendered["everything"]["docs"], "ConfigMap")
    assert set(configmap["data"]) == {*EXAMPLE_FILES, "tiny.yml"}
    assert configmap["data"]["acme-web.yaml"] == EXAMPLE_FILES["acme-web.yaml"]
    for name, text in configmap["data"].items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    loaded = load_dir(tmp_path, environ={})
    assert loaded.ok, [str(e) for e in loaded.errors]
    assert set(loaded.apps) == {"acme-web", "acme-jobs", "tiny"}


def test_settings_and_extras(rendered: dict[str, dict[str, Any]]) -> None:
    """settings become MACHINE_RECONCILER_<FIELD> variables; extras and the digest are used."""
    docs = rendered["everything"]["docs"]
    main = container(docs)
    env = env_of(main)
    assert env["MACHINE_RECONCILER_MAX_IN_FLIGHT"]["value"] == "16"
    assert env["MACHINE_RECONCILER_WATCH_INTERVAL"]["value"] == "1.5"
    assert env["ACME_QUEUE_URL"]["value"] == "redis://queue:6379/0"
    assert main["args"][-2:] == ["--lease-wait", "90"]
    assert main["image"] == "ghcr.io/acme/machine-reconciler@sha256:" + "a" * 64
    assert pod_annotations(docs)["example.com/owner"] == "platform"
    assert {"checksum/desired-state", "checksum/secret"} <= set(pod_annotations(docs))


def test_service_monitor_and_rules(rendered: dict[str, dict[str, Any]]) -> None:
    """The ServiceMonitor scrapes the metrics Service's port; every alert uses real metrics."""
    docs = rendered["monitoring"]["docs"]
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"

    rules = only(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    by_name = {r["alert"]: r for r in rules}
    assert set(by_name) >= {
        "MachineReconcilerAlertFiring",
        "MachineReconcilerStale",
        "MachineReconcilerErrorRate",
    }
    assert "machine_reconciler_alerts_firing" in by_name["MachineReconcilerAlertFiring"]["expr"]
    assert "> 300" in by_name["MachineReconcilerStale"]["expr"]  # 5 x 60 s interval
    assert 'result="failed"' in by_name["MachineReconcilerErrorRate"]["expr"]
    exported: set[str] = set()
    for family in Metrics().registry.collect():  # counters are exposed with a _total suffix
        exported |= {family.name, f"{family.name}_total"}
    for rule in rules:
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")"), expr
        assert expr.count("{") == expr.count("}"), expr
        assert f'job="{service["metadata"]["name"]}"' in expr
        for metric in re.findall(r"\bmachine_reconciler_[a-z_]+", expr):
            assert metric in exported, metric
        assert rule["labels"]["team"] == "platform"
        assert rule["labels"]["severity"] in {"warning", "critical"}
    everything = only(rendered["everything"]["docs"], "PrometheusRule")
    stale = {r["alert"]: r for r in everything["spec"]["groups"][0]["rules"]}
    assert "> 900" in stale["MachineReconcilerStale"]["expr"]


def test_network_policy(rendered: dict[str, dict[str, Any]]) -> None:
    """Egress: DNS and HTTPS to public addresses only; ingress: the health port only."""
    docs = rendered["network-policy"]["docs"]
    policy = only(docs, "NetworkPolicy")["spec"]
    pod_labels = workload(docs)["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"][0]["namespaceSelector"]
    dns, api = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert api["ports"] == [{"port": 443, "protocol": "TCP"}]
    blocks = [peer["ipBlock"] for peer in api["to"]]
    v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert "169.254.0.0/16" in v4["except"]  # cloud metadata stays out of reach
    assert "10.0.0.0/8" in v4["except"]
