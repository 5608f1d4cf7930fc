"""promtool accepts deploy/prometheus/ as shipped, from any working directory (the config's
rule_files path is relative to the config, so it resolves in compose and in the repo)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.prometheus_server import REPO, RULES, binaries

pytestmark = pytest.mark.prometheus
CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"


def _promtool(*args: str, cwd: Path) -> str:
    _, promtool = binaries()
    r = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


def test_promtool_checks_the_shipped_config_and_its_rules(tmp_path: Path) -> None:
    out = _promtool("check", "config", str(CONFIG), cwd=tmp_path)
    assert "1 rule files found" in out


def test_promtool_checks_the_shipped_rules(tmp_path: Path) -> None:
    out = _promtool("check", "rules", str(RULES), cwd=tmp_path)
    assert "SUCCESS" in out
