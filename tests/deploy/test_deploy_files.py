"""Static checks of the deployment files (no Docker, no network, no model loading).

They keep deploy/ from drifting away from the code: every metric a dashboard or rule queries
must be one service/metric_catalog.py lists (tests/service/test_metric_catalog.py ties that
list to service/metrics.py), every listed metric must be charted and in docs/METRICS.md's
generated table, every FERCOMP_* variable must be a setting, every probe path a route, and no
dataset may reach an image or a container.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import gen_metrics_doc
from service.metric_catalog import CATALOG

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
# FERCOMP_DB_PASSWORD: compose/stack interpolation only (PostgreSQL's password, inside DB_URL)
NON_SETTINGS_ENV = {"models", "server", "http", "cache", "debug", "db_password"}
DATASET_MARKERS = ("shared", ".data", ".npz", ".csv", "fer2013", "sealed")


def _exposed_series() -> set[str]:
    return {series for m in CATALOG for series in m.series}


def _dashboard_exprs() -> list[str]:
    return list(_strings(json.loads(DASHBOARD.read_text()), ("expr", "query", "definition")))


def _uncharted(exprs: list[str]) -> list[str]:
    """Catalogue families no expression queries (the _created timestamps do not count)."""
    used = {m for e in exprs for m in METRIC_RE.findall(e)}
    return [m.exposed_name for m in CATALOG if not any(u.startswith(m.name) for u in used)]


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
    exprs = _dashboard_exprs()
    assert len(exprs) >= 20
    used = {m for e in exprs for m in METRIC_RE.findall(e)}
    assert used - _exposed_series() == set()
    assert {m for e in exprs for m in RECORDED_RE.findall(e)} - _recorded_names() == set()


def test_dashboard_charts_every_catalogued_metric() -> None:
    uncharted = _uncharted(_dashboard_exprs())
    assert not uncharted, f"on no panel of {DASHBOARD.name}: {', '.join(uncharted)}"


def test_uncharted_metric_is_named() -> None:
    exprs = [e for e in _dashboard_exprs() if "fercomp_store_dropped" not in e]
    assert _uncharted(exprs) == ["fercomp_store_dropped_total"]


# -- docs/METRICS.md's table is generated from the same catalogue ----------------------------
def test_metrics_doc_table_is_up_to_date() -> None:
    found = gen_metrics_doc.problems(gen_metrics_doc.DOC.read_text())
    assert not found, "run python -m scripts.gen_metrics_doc:\n" + "\n".join(found)


def test_stale_metrics_doc_names_the_metric() -> None:
    text = gen_metrics_doc.DOC.read_text()
    row = next(m.table_row() for m in CATALOG if m.name == "fercomp_queue_depth")
    assert gen_metrics_doc.problems(text.replace(row + "\n", "")) == [
        "fercomp_queue_depth: missing from METRICS.md"
    ]
    changed = text.replace(row, row.replace("exact", "roughly"))
    assert gen_metrics_doc.problems(changed) == [
        "fercomp_queue_depth: row differs from the catalogue"
    ]
    assert gen_metrics_doc.render(changed) == text


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


def test_images_ship_the_release_set_not_every_version() -> None:
    """The runtime stage gets models/ only through the build stage's release staging."""
    for path in DOCKERFILES:
        text = path.read_text()
        kind = " --kind codec" if path.name == "Dockerfile.client" else ""
        assert f"--release-to /opt/models{kind}\n" in text, path.name
        runtime = text[text.index(" AS runtime") :]
        assert "COPY --from=build /opt/models /app/models" in runtime, path.name
        assert not re.search(r"^COPY models", runtime, re.M), path.name


def _host_mounts(compose_file: Path) -> dict[str, list[str]]:
    """Service -> the host paths (bind mounts, not named volumes) it mounts."""
    text = compose_file.read_text().lower()
    assert not [m for m in DATASET_MARKERS if m in text], f"dataset-like path in {compose_file}"
    yaml = pytest.importorskip("yaml")
    mounts: dict[str, list[str]] = {}
    for name, svc in yaml.safe_load(compose_file.read_text())["services"].items():
        for vol in svc.get("volumes", []):
            source = (vol if isinstance(vol, str) else vol.get("source", "")).split(":")[0]
            if source.startswith((".", "/")):
                mounts.setdefault(name, []).append(source)
    return mounts


def test_compose_mounts_no_dataset_and_serves_the_image_release_set() -> None:
    mounts = _host_mounts(COMPOSE)
    for name, sources in mounts.items():
        assert all(s.startswith("./deploy/") for s in sources), (name, sources)
    # The servers serve the release set baked into the image, not the checkout's models/.
    assert "fercomp" not in mounts and "fercomp-replica" not in mounts, mounts


def test_compose_models_override_mounts_the_repository_read_only() -> None:
    override = DEPLOY / "compose.models.yml"
    assert _host_mounts(override) == {"fercomp": ["./models"], "fercomp-replica": ["./models"]}
    yaml = pytest.importorskip("yaml")
    for svc in yaml.safe_load(override.read_text())["services"].values():
        assert svc["volumes"] == ["./models:/app/models:ro"]


# deploy/k8s (rendering, schema check, the HPA chain): tests/deploy/test_k8s_manifests.py


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
