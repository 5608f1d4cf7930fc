"""Static checks of the Swarm stack (deploy/swarm/, `make fleet-test`): no Docker engine, no
network. The stack must stay a fleet (replicas, a start-first rolling update that rolls back,
readiness on a real route, one shared PostgreSQL store, per-task instance names) and its
HAProxy and Prometheus must see every task, not a virtual IP."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.test_deploy_files import DATASET_MARKERS, _routes, _settings_fields

REPO = Path(__file__).resolve().parents[2]
SWARM = REPO / "deploy" / "swarm"
STACK = SWARM / "stack.yml"
ENV_RE = re.compile(r"\bFERCOMP_[A-Z0-9_]+")
MEMORY_RE = re.compile(r"^(\d+)([MG])$")
MACHINE_MEMORY_GB = 24  # the machine make fleet-test is measured on (docs/DEPLOY.md)


def _stack() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    doc: dict[str, Any] = yaml.safe_load(STACK.read_text())
    return doc


def _memory_gb(value: str) -> float:
    m = MEMORY_RE.match(value)
    assert m, f"memory limit {value!r}: write it as <n>M or <n>G"
    return int(m[1]) / (1024 if m[2] == "M" else 1)


def test_server_is_a_fleet_with_a_safe_rolling_update() -> None:
    server = _stack()["services"]["server"]
    deploy = server["deploy"]
    assert deploy["replicas"] >= 3
    update = deploy["update_config"]
    assert update["order"] == "start-first"  # a new task is healthy before an old one stops
    assert update["parallelism"] == 1
    assert update["failure_action"] == "rollback"
    assert deploy["rollback_config"]["order"] == "start-first"
    # Swarm waits for a healthy task; the health check is the readiness route.
    probe = " ".join(server["healthcheck"]["test"])
    used = re.findall(r"(/(?:healthz|readyz))\b", probe)
    assert used == ["/readyz"] and set(used) <= _routes()
    assert server["stop_grace_period"]


def test_replicas_share_one_postgres_store_and_name_themselves_per_task() -> None:
    services = _stack()["services"]
    env = services["server"]["environment"]
    url = urlsplit(env["FERCOMP_DB_URL"])
    assert url.scheme == "postgresql"
    assert url.hostname in services  # the stack's own PostgreSQL service
    assert url.password == "${FERCOMP_DB_PASSWORD}"  # from the environment, not in git
    pg_env = services[url.hostname]["environment"]
    assert pg_env["POSTGRES_PASSWORD"].startswith("${FERCOMP_DB_PASSWORD")
    assert (url.username, url.path.lstrip("/")) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_DB"])
    assert env["FERCOMP_INSTANCE_ID"] == "{{.Task.Name}}"  # unique per task, new on reschedule
    assert env["FERCOMP_ADMIN_TOKEN"].startswith("${FERCOMP_ADMIN_TOKEN:?")
    assert any(v["target"] == "/var/lib/postgresql/data" for v in _volumes(services[url.hostname]))


def _volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for v in service.get("volumes", []):
        if isinstance(v, str):
            source, target = v.split(":")[:2]
            out.append({"source": source, "target": target})
        else:
            out.append(v)
    return out


def test_server_env_vars_are_real_settings() -> None:
    """The server's FERCOMP_* variables (FERCOMP_DB_PASSWORD and the token's ${...} are the
    stack file's own interpolation, from the shell that deploys it)."""
    known = _settings_fields()
    env = _stack()["services"]["server"]["environment"]
    assert {k for k in env if k.startswith("FERCOMP_")} >= {"FERCOMP_DB_URL", "FERCOMP_INSTANCE_ID"}
    for var in env:
        assert ENV_RE.fullmatch(var) and var[len("FERCOMP_") :].lower() in known, var


def test_every_task_is_reachable_by_name_and_the_network_is_attachable() -> None:
    stack = _stack()
    for name, svc in stack["services"].items():
        # dnsrr: <service> and tasks.<service> resolve to the tasks (no IPVS virtual IP).
        assert svc["deploy"]["endpoint_mode"] == "dnsrr", name
        assert svc["networks"] == ["fleet"], name
        for port in svc.get("ports", []):
            assert port["mode"] == "host", name  # the routing mesh needs IPVS too
    net = stack["networks"]["fleet"]
    assert net["driver"] == "overlay" and net["attachable"] is True


def test_memory_limits_fit_the_machine() -> None:
    services = _stack()["services"]
    limits = {
        n: _memory_gb(s["deploy"]["resources"]["limits"]["memory"]) for n, s in services.items()
    }
    # Every replica, plus the one extra task of a start-first update, plus the other services.
    servers = services["server"]["deploy"]["replicas"] + 1
    total = limits.pop("server") * servers + sum(limits.values())
    assert total < MACHINE_MEMORY_GB, limits


def test_haproxy_and_prometheus_see_each_server_task() -> None:
    stack = _stack()
    configs = {k: (SWARM / v["file"]).resolve() for k, v in stack["configs"].items()}
    assert all(p.is_file() for p in configs.values()), configs
    targets = {
        c["target"]: configs[c["source"]]
        for s in stack["services"].values()
        for c in s.get("configs", [])
    }
    haproxy = targets["/etc/haproxy/haproxy.cfg"].read_text()
    templates = re.findall(r"^\s*server-template \S+ (\d+) tasks\.server:(\d+) .*$", haproxy, re.M)
    assert sorted(port for _, port in templates) == ["50051", "8000"]  # gRPC and REST
    assert all(int(n) > stack["services"]["server"]["deploy"]["replicas"] for n, _ in templates)
    assert "resolvers docker" in haproxy and "127.0.0.11:53" in haproxy
    assert haproxy.count("/readyz") >= 2  # both backends check readiness
    prom = targets["/etc/prometheus/prometheus.yml"].read_text()
    assert 'names: ["tasks.server"]' in prom and "rules.yml" in prom
    assert targets["/etc/prometheus/rules.yml"] == REPO / "deploy" / "prometheus" / "rules.yml"


def test_no_dataset_and_only_local_images() -> None:
    text = STACK.read_text().lower()
    assert not [m for m in DATASET_MARKERS if m in text]
    images = {s["image"] for s in _stack()["services"].values()}
    assert all(i.startswith("fercomp-") and i.endswith(":local") for i in images), images
    built = (SWARM / "fleet_test.sh").read_text() + (
        REPO / "deploy" / "local" / "engine.sh"
    ).read_text()
    built += (REPO / "docker-compose.yml").read_text() + (
        REPO / "deploy/local/compose.yml"
    ).read_text()
    assert all(i in built for i in images), images


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")
def test_docker_accepts_the_stack_file(tmp_path: Path) -> None:
    """`docker stack config` (client side, no engine) validates the file against the compose
    schema Swarm uses and interpolates it."""
    # No engine is asked: a socket that does not exist.
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    env |= {"FERCOMP_ADMIN_TOKEN": "t", "FERCOMP_DB_PASSWORD": "p"}
    p = subprocess.run(
        ["docker", "stack", "config", "-c", str(STACK)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    if p.returncode != 0 and re.search(
        r"unknown (command|shorthand flag)|not a docker command", p.stderr
    ):
        pytest.skip(f"this docker CLI has no `docker stack config`: {p.stderr.strip()}")
    assert p.returncode == 0, p.stderr
    assert "postgresql://fercomp:p@postgres:5432/fercomp" in p.stdout
    missing = subprocess.run(
        ["docker", "stack", "config", "-c", str(STACK)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "FERCOMP_DB_PASSWORD": ""},
    )
    assert missing.returncode != 0 and "FERCOMP_DB_PASSWORD" in missing.stderr
