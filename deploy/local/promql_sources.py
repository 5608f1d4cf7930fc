"""Every PromQL expression the project publishes, collected from where it is published:
docs/METRICS.md, deploy/prometheus/rules.yml (through Prometheus' rules API) and the Grafana
dashboard, for check 2 of `make stack-test` (deploy/local/stack_checks.py)."""

from __future__ import annotations

import json
import re
from typing import Any

from stack_io import PROM, ROOT, http


def metrics_md_exprs() -> list[str]:
    text = (ROOT / "docs/METRICS.md").read_text()
    out: list[str] = []
    for block in re.findall(r"```promql\n(.*?)```", text, re.S):
        for raw in block.splitlines():
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            if raw[:1].isspace() and out:  # continuation of the previous expression
                out[-1] += " " + line.strip()
            else:
                out.append(line.strip())
    return out


def rules_exprs() -> tuple[list[str], list[str]]:
    """(recording expressions, alert expressions) of deploy/prometheus/rules.yml, via
    Prometheus' own rules API (so no YAML parser is needed and what is checked is what runs)."""
    doc = json.loads(http(f"{PROM}/api/v1/rules")[1])
    rec, alerts = [], []
    for g in doc["data"]["groups"]:
        for r in g["rules"]:
            (alerts if r["type"] == "alerting" else rec).append(r["query"])
    return rec, alerts


def dashboard_exprs() -> list[str]:
    doc = json.loads((ROOT / "deploy/grafana/dashboards/fercomp.json").read_text())
    found: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if isinstance(x.get("expr"), str) and x["expr"].strip():
                found.append(x["expr"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(doc.get("panels", []))
    subst = {
        "$__rate_interval": "1m",
        "${__rate_interval}": "1m",
        "$__interval": "15s",
        "$__range": "1h",
        "${instance:regex}": ".*",
        "${instance}": ".*",
        "$instance": ".*",
    }
    out = []
    for e in found:
        for k, v in subst.items():
            e = e.replace(k, v)
        out.append(e)
    return out


# May be empty on a healthy stack: shed load (no such series until a request is shed), and
# the replicas not on the newest rollout (none on a converged fleet; docs/METRICS.md).
MAY_BE_EMPTY = ['status="resource_exhausted"', "fercomp_fleet_converged == 0"]
