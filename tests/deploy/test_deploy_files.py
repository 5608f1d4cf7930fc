"""Static checks of the deployment files (no Docker, no network, no model loading).

They keep deploy/ from drifting away from the code: every metric a dashboard or rule queries
must be one service/metrics.py defines, every FERCOMP_* variable must be a setting, every
probe path a route, and no dataset may reach an image or a container.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = REPO / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fercomp.json"
RULES = DEPLOY / "prometheus" / "rules.yml"
DOCKERFILES = sorted(DEPLOY.glob("Dockerfile*"))
YAML_FILES = sorted([COMPOSE, *DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])

METRIC_RE = re.compile(r"\bfercomp_[a-z0-9_]+")
RECORDED_RE = re.compile(r"\bfercomp:[a-zA-Z0-9_:]+")
ENV_RE = re.compile(r"\bFERCOMP_[A-Z0-9_]+")
# FERCOMP_* variables read outside service.settings: core.artifacts.bundled_models_dir
# (MODELS), the client CLI (SERVER, HTTP), client.sync (CACHE), cli.main (DEBUG).
NON_SETTINGS_ENV = {"models", "server", "http", "cache", "debug"}
SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Gauge": ("",),
}
DATASET_MARKERS = ("shared", ".data", ".npz", ".csv", "fer2013", "sealed")


def _fstring(node: ast.AST, env: dict[str, str]) -> str | None:
    """The value of a constant string or an f-string over names in ``env``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if not isinstance(node, ast.JoinedStr):
        return None
    parts = []
    for v in node.values:
        if isinstance(v, ast.Constant):
            parts.append(str(v.value))
        elif isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name):
            if v.value.id not in env:
                return None
            parts.append(env[v.value.id])
        else:
            return None
    return "".join(parts)


def _defined_metrics() -> dict[str, str]:
    """{metric family name: Counter|Histogram|Gauge} from service/metrics.py's source.

    Parsed, not imported: importing pulls in torch, far over this file's time budget.
    Handles the two shapes the module uses: ``Counter(f"{p}_name", ...)`` and the
    ``_latency("what", ...)`` helper around ``Histogram(f"fercomp_{what}_latency_seconds")``.
    """
    tree = ast.parse((REPO / "service" / "metrics.py").read_text())
    latency_args = [
        _fstring(c.args[0], {})
        for c in ast.walk(tree)
        if isinstance(c, ast.Call)
        and isinstance(c.func, ast.Attribute)
        and c.func.attr == "_latency"
        and c.args
    ]
    found: dict[str, str] = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)):
            continue
        if call.func.id not in SUFFIXES or not call.args:
            continue
        name = _fstring(call.args[0], {"p": "fercomp"})
        if name is not None:
            found[name] = call.func.id
            continue
        for what in latency_args:
            assert what is not None, "_latency() called with a non-literal name"
            resolved = _fstring(call.args[0], {"what": what})
            assert resolved is not None, f"cannot resolve a metric name at line {call.lineno}"
            found[resolved] = call.func.id
    assert len(found) >= 15, f"parser found only {sorted(found)}; update this test"
    return found


def _exposed_series() -> set[str]:
    return {name + s for name, kind in _defined_metrics().items() for s in SUFFIXES[kind]}


def _strings(obj: Any, keys: tuple[str, ...]) -> Iterator[str]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in keys and isinstance(v, str):
                yield v
            yield from _strings(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v, keys)


def _recorded_names() -> set[str]:
    return set(re.findall(r"^\s*-?\s*record:\s*(\S+)\s*$", RULES.read_text(), re.M))


def _settings_fields() -> set[str]:
    tree = ast.parse((REPO / "service" / "settings.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")
    return {
        n.target.id
        for n in cls.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }


def _routes() -> set[str]:
    text = "".join(p.read_text() for p in (REPO / "service" / "http").glob("*.py"))
    return set(re.findall(r'@router\.(?:get|post|put|delete)\(\s*"([^"]+)"', text))


# -- parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_yaml_parses(path: Path) -> None:
    yaml = pytest.importorskip("yaml")

    class ComposeLoader(yaml.SafeLoader):
        """Safe loading plus Compose's merge tags (!reset, !override: deploy/local/compose.yml)."""

    for tag in ("!reset", "!override"):
        ComposeLoader.add_constructor(tag, _compose_tag)
    docs = [d for d in yaml.load_all(path.read_text(), Loader=ComposeLoader) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


def _compose_tag(loader: Any, node: Any) -> Any:
    if node.id == "sequence":
        return loader.construct_sequence(node)
    if node.id == "mapping":
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)


def test_dashboard_is_valid_json_with_unique_panel_ids() -> None:
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) and dash["uid"]
    assert all(p["datasource"]["uid"] == "prometheus" for p in dash["panels"] if "targets" in p)


# -- metric names cannot drift from service/metrics.py ---------------------------------------
def test_dashboard_queries_only_existing_metrics() -> None:
    exprs = list(_strings(json.loads(DASHBOARD.read_text()), ("expr", "query", "definition")))
    assert len(exprs) >= 20
    used = {m for e in exprs for m in METRIC_RE.findall(e)}
    assert used - _exposed_series() == set()
    assert {m for e in exprs for m in RECORDED_RE.findall(e)} - _recorded_names() == set()
    # The dashboard covers every family except the internal _created timestamps.
    assert {n for n in _defined_metrics() if not any(u.startswith(n) for u in used)} == set()


def test_rules_and_docs_reference_only_existing_metrics() -> None:
    recorded = _recorded_names()
    assert {
        "fercomp:bandwidth_bytes_per_second",
        "fercomp:accuracy:ratio_1h",
        "fercomp:p95_latency_seconds",
    } <= recorded
    docs = (REPO / "docs" / "DEPLOY.md").read_text()
    # The docs' PromQL: fenced promql blocks and inline code spans that call a function
    # (other code, e.g. the compose network fercomp_default, is not a metric).
    promql = re.findall(r"```promql\n(.*?)```", docs, re.S)
    promql += [span for span in re.findall(r"`([^`\n]+)`", docs) if "(" in span]
    assert len(promql) >= 5
    for where, text in (("rules.yml", RULES.read_text()), ("DEPLOY.md", "\n".join(promql))):
        assert set(METRIC_RE.findall(text)) - _exposed_series() == set(), where
        assert set(RECORDED_RE.findall(text)) - recorded == set(), where


# -- settings, routes, health ----------------------------------------------------------------
def test_fercomp_env_vars_are_real_settings() -> None:
    known = _settings_fields() | NON_SETTINGS_ENV
    files = [COMPOSE, *DOCKERFILES, *(DEPLOY / "k8s").glob("*.yaml")]
    for path in files:
        for var in ENV_RE.findall(path.read_text()):
            assert var[len("FERCOMP_") :].lower() in known, f"{path.name}: {var}"


def test_probes_and_healthchecks_use_existing_routes() -> None:
    routes = _routes()
    assert {"/healthz", "/readyz", "/metrics"} <= routes
    files = [COMPOSE, *DOCKERFILES, DEPLOY / "k8s" / "deployment.yaml"]
    for path in files:
        for used in re.findall(r"(/(?:healthz|readyz|metrics))\b", path.read_text()):
            assert used in routes, f"{path.name}: {used}"
    for dockerfile in (DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.gpu"):
        text = dockerfile.read_text()
        assert "/readyz" in text and "EXPOSE 50051 8000" in text


def test_envoy_health_checks_the_proto_service() -> None:
    proto = (REPO / "proto" / "fercomp" / "v1" / "fercomp.proto").read_text()
    package = re.search(r"^package\s+([\w.]+);", proto, re.M)
    service = re.search(r"^service\s+(\w+)", proto, re.M)
    assert package and service
    envoy = (DEPLOY / "envoy" / "envoy.yaml").read_text()
    assert f"service_name: {package[1]}.{service[1]}" in envoy


# -- no dataset in images or containers -----------------------------------------------------------
def test_dockerignore_excludes_datasets() -> None:
    lines = {ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()}
    assert {"**/*.npz", "**/*.csv", ".data", "shared", ".venv", "runs", "tests"} <= lines


def test_dockerfiles_copy_only_code_and_models() -> None:
    allowed = {"pyproject.toml", "README.md", "core", "service", "client", "cli", "proto", "models"}
    for path in DOCKERFILES:
        for line in re.findall(r"^COPY\s+(.+)$", path.read_text(), re.M):
            if "--from=" in line:
                continue
            sources = [s for s in line.split()[:-1] if not s.startswith("--")]
            assert set(sources) <= allowed, f"{path.name}: COPY {line}"


def test_compose_mounts_no_dataset() -> None:
    text = COMPOSE.read_text().lower()
    assert not [m for m in DATASET_MARKERS if m in text], "dataset-like path in compose"
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load(COMPOSE.read_text())
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            source = (vol if isinstance(vol, str) else vol.get("source", "")).split(":")[0]
            if source.startswith((".", "/")):
                assert source == "./models" or source.startswith("./deploy/"), (name, vol)
    assert "./models:/app/models:ro" in compose["services"]["fercomp"]["volumes"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders_every_manifest() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    kinds = {m.group(1) for m in re.finditer(r"^kind: (\w+)$", out, re.M)}
    assert {"Namespace", "Deployment", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds


# -- the registry-less override (deploy/local, make stack-test) ------------------------------
def test_local_override_builds_from_local_files_only() -> None:
    """deploy/local/compose.yml only overrides: no dataset mounts, every build context inside
    deploy/local or the repository root, and HAProxy health-checks the readiness route."""
    text = (DEPLOY / "local" / "compose.yml").read_text()
    assert not [m for m in DATASET_MARKERS if m in text.lower()]
    assert "volumes:" not in text
    contexts = re.findall(r"context:\s*(\S+)", text)
    assert contexts and set(contexts) <= {"deploy/local", "."}
    assert "/readyz" in (DEPLOY / "local" / "haproxy.cfg").read_text()
    assert "/readyz" in _routes()
