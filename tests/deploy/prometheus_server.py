"""A real Prometheus (Debian's package) for tests: started on a free port, temp config and
storage, the project's rules.yml loaded, queried through its HTTP API.

Also meant for the compose stack test: ``PrometheusAPI`` works against any Prometheus URL.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
SCRAPE_INTERVAL_S = 1  # short, so the test waits seconds, not minutes, for fresh samples
INSTALL_HINT = "apt-get install -y prometheus (.ci/run does this when run as root)"


def binaries() -> tuple[str, str]:
    """(prometheus, promtool), or skip the calling test with how to get them."""
    found = shutil.which("prometheus"), shutil.which("promtool")
    if None in found:
        pytest.skip(f"prometheus/promtool not on PATH: {INSTALL_HINT}")
    return found  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusAPI:
    """The few endpoints the tests need; every call fails loudly on an API error."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def _get(self, path: str, **params: Any) -> Any:
        body = self.http.get(path, params=params).json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; ``at`` (unix seconds, ms precision) evaluates at that time."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", **params)
        assert data["resultType"] in ("vector", "scalar"), (expr, data["resultType"])
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in self._get("/api/v1/rules")["groups"] for r in g["rules"]]

    def ready(self) -> bool:
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def wait_for(self, what: str, check: Any, deadline_s: float = 60.0) -> Any:
        """Poll ``check()`` until it returns something truthy; fail after ``deadline_s``.
        The deadline only bounds a hang: nothing asserts how fast Prometheus is."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if result := check():
                return result
            time.sleep(0.2)
        pytest.fail(f"Prometheus: no {what} within {deadline_s:.0f} s")

    def close(self) -> None:
        self.http.close()


def write_config(directory: Path, targets: list[str], rules: Path = RULES) -> Path:
    """A config scraping ``targets`` as job "fercomp" (the rules' alerts match fercomp*)."""
    cfg = directory / "prometheus.yml"
    cfg.write_text(
        f"global:\n"
        f"  scrape_interval: {SCRAPE_INTERVAL_S}s\n"
        f"  evaluation_interval: {SCRAPE_INTERVAL_S}s\n"
        f"rule_files: [{str(rules)!r}]\n"
        f"scrape_configs:\n"
        f"  - job_name: fercomp\n"
        f"    static_configs: [{{targets: {targets!r}}}]\n"
    )
    return cfg


@contextmanager
def running_prometheus(directory: Path, targets: list[str]) -> Iterator[PrometheusAPI]:
    prometheus, promtool = binaries()
    cfg = write_config(directory, targets)
    subprocess.run([promtool, "check", "config", str(cfg)], check=True, capture_output=True)
    port = free_port()
    log = (directory / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = PrometheusAPI(f"http://127.0.0.1:{port}")
    try:
        api.wait_for("readiness", lambda: api.ready() or proc.poll() is not None)
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited: {(directory / 'prometheus.log').read_text()}")
        yield api
    finally:
        api.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
