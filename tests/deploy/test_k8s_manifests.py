"""Static checks of the Kubernetes base, deploy/k8s (no cluster: there is none here).

What ``kubectl apply -k deploy/k8s`` would send must render, and every object must match the
API server's schema for the Kubernetes versions the base supports, strictly (an unknown or
misplaced field fails, as a typo would otherwise be dropped by the server without a word). The
autoscaling chain must hold together: the HPA scales this Deployment, on a gauge the server
exports, that the prometheus-adapter rule serves; the Deployment leaves the replica count to
the HPA and takes its PostgreSQL URL from a Secret that is not in git.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.metric_catalog import CATALOG

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
ADAPTER_VALUES = K8S / "prometheus-adapter" / "values.yaml"
# The oldest version the base claims (docs/DEPLOY.md: the PDB's unhealthyPodEvictionPolicy is
# 1.27+) and the newest whose schemas kubernetes-validate bundles.
OLDEST_SUPPORTED = "1.27"


def _source(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((K8S / name).read_text())
    assert isinstance(doc, dict)
    return doc


@functools.cache
def _rendered() -> tuple[dict[str, Any], ...]:
    """The objects of ``kubectl kustomize deploy/k8s``; skips where kubectl is not installed."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: deploy/k8s is not rendered (apt install kubectl)")
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def _rendered_kind(kind: str) -> dict[str, Any]:
    (obj,) = [o for o in _rendered() if o["kind"] == kind]
    return obj


def _validator() -> Any:
    return pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate not installed (pip install -e '.[dev]'): no schema check",
    )


def _versions() -> list[str]:
    try:
        import kubernetes_validate
    except ImportError:
        return [OLDEST_SUPPORTED]
    latest = ".".join(str(kubernetes_validate.latest_version()).split(".")[:2])
    return [OLDEST_SUPPORTED, latest]


def test_kustomize_renders_every_manifest() -> None:
    kinds = sorted(o["kind"] for o in _rendered())
    assert kinds == [
        "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Namespace",
        "PodDisruptionBudget", "Service", "Service",
    ]  # fmt: skip
    namespaced = [o for o in _rendered() if o["kind"] != "Namespace"]
    assert all(o["metadata"].get("namespace") == "fercomp" for o in namespaced)
    # No Secret in the base: the token and the database password never go into git.
    assert "Secret" not in kinds


@pytest.mark.parametrize("version", _versions())
def test_rendered_objects_match_the_api_schemas_strictly(version: str) -> None:
    kv = _validator()
    for obj in _rendered():
        kv.validate(obj, version, strict=True)  # raises ValidationError, naming the field


def test_the_strict_schema_check_refuses_an_unknown_field() -> None:
    """The check above can fail: a field the API does not know (here a typo'd probe) is
    refused, not ignored as ``kubectl apply`` without validation would."""
    kv = _validator()
    deployment = copy.deepcopy(_rendered_kind("Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kv.ValidationError, match="readinesProbe"):
        kv.validate(deployment, OLDEST_SUPPORTED, strict=True)


# -- the autoscaling chain: HPA -> Deployment, HPA -> exported gauge -> adapter rule --------
def _hpa_metric_name(hpa: dict[str, Any]) -> str:
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["target"]["type"] == "AverageValue"
    name = metric["pods"]["metric"]["name"]
    assert isinstance(name, str)
    return name


def test_hpa_scales_the_deployment() -> None:
    hpa, deployment = _source("hpa.yaml"), _source("deployment.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    spec = hpa["spec"]
    assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
    # The HPA owns the count: a replicas field would be reset by every `kubectl apply -k`.
    assert "replicas" not in deployment["spec"]


def test_hpa_metric_is_a_gauge_the_server_exports() -> None:
    name = _hpa_metric_name(_source("hpa.yaml"))
    exported = {m.name: m for m in CATALOG}
    assert name in exported, f"{name} is not in service/metric_catalog.py"
    assert exported[name].type == "gauge" and not exported[name].labels


def test_prometheus_adapter_rule_serves_the_hpa_metric() -> None:
    name = _hpa_metric_name(_source("hpa.yaml"))
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    assert rule["seriesQuery"].startswith(name + "{")
    assert rule["name"]["as"] == name
    # Pods metrics are looked up per namespace and pod: the series must map to both.
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    assert "<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"]
    assert "by (<<.GroupBy>>)" in rule["metricsQuery"]
    # Optional: installing it configures a cluster-wide component, so it stays out of the base.
    resources = _source("kustomization.yaml")["resources"]
    assert "hpa.yaml" in resources
    assert not [r for r in resources if "prometheus-adapter" in r]


# -- the Deployment: shared store, readiness gate, nothing kept per pod -------------------
def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_deployment_takes_the_database_url_from_its_secret() -> None:
    container = _container(_source("deployment.yaml"))
    env = {e["name"]: e for e in container["env"]}
    assert env["FERCOMP_DB_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "fercomp-db", "key": "url"}
    }
    assert "FERCOMP_DB_PATH" not in _source("configmap.yaml")["data"]


def test_deployment_keeps_no_state_in_the_pod() -> None:
    pod = _source("deployment.yaml")["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert all("emptyDir" in v for v in pod["volumes"])
    assert [m["mountPath"] for m in _container(_source("deployment.yaml"))["volumeMounts"]] == [
        "/tmp"
    ]


def test_deployment_gates_traffic_on_readiness_after_a_long_enough_start() -> None:
    container = _container(_source("deployment.yaml"))
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    startup = container["startupProbe"]
    # Store migrations, model load and the fleet's desired models all precede the first
    # answer; give them minutes, not the kubelet's default of 30 s.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 240
