"""Every PromQL expression a user reads, as shipped: docs/METRICS.md, rules.yml, the dashboard.

``shipped()`` collects them with where they come from; ``evaluable`` turns one into what
Prometheus can run (Grafana's variables substituted, recorded series expanded into their rule
expressions so a test can evaluate them at a time of its choosing); ``key`` is the normal form
the truth catalog (tests/deploy/promql_truth.py) is keyed by.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
METRICS_DOC = REPO / "docs" / "METRICS.md"
DEPLOY_DOC = REPO / "docs" / "DEPLOY.md"
RULES = REPO / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "fercomp.json"

RECORDED_RE = re.compile(r"\bfercomp:[a-zA-Z0-9_:]+")
# Grafana's $__rate_interval is max(4 x scrape interval, step + scrape interval), a few tens
# of seconds on a live dashboard. Tests put 5m in its place: a window that covers all their
# traffic, so the exact figure is known (see promql_truth.py).
RATE_INTERVAL = "5m"
GRAFANA_VARS = {'instance=~"$instance"': 'instance=~".*"', "$__rate_interval": RATE_INTERVAL}
# label_values(metric, label) is a Grafana template function, not PromQL.
LABEL_VALUES_RE = re.compile(r"^label_values\((\w+),\s*(\w+)\)$")


@dataclass(frozen=True)
class Shipped:
    source: str  # file and place, for failure messages
    expr: str  # exactly as in the file
    kind: str = "query"  # "query", "record" or "alert"


def _doc_queries(doc: Path) -> list[Shipped]:
    """The ```promql blocks of ``doc``: a query starts in column 0, indented lines continue
    it, ``#`` starts a comment."""
    out: list[Shipped] = []
    for block in re.findall(r"```promql\n(.*?)```", doc.read_text(), re.S):
        current: list[str] = []
        for line in [*block.splitlines(), ""]:
            code = line.split("#", 1)[0].rstrip()
            if code and code[0].isspace() and current:
                current.append(code.strip())
                continue
            if current:
                out.append(Shipped(f"docs/{doc.name}", " ".join(current)))
            current = [code.strip()] if code.strip() else []
    return out


def rules() -> list[dict[str, str]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def recording_rules() -> dict[str, str]:
    return {r["record"]: r["expr"] for r in rules() if "record" in r}


def _rule_queries() -> list[Shipped]:
    return [
        Shipped(
            f"rules.yml {r.get('record') or r['alert']}",
            r["expr"],
            "record" if "record" in r else "alert",
        )
        for r in rules()
    ]


def _dashboard_queries() -> list[Shipped]:
    dash = json.loads(DASHBOARD.read_text())
    out = [
        Shipped(f"dashboard variable {v['name']}", v["definition"])
        for v in dash["templating"]["list"]
        if v.get("type") == "query"
    ]
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            out.append(Shipped(f"dashboard panel {panel['title']!r} {t['refId']}", t["expr"]))
    return out


def shipped() -> list[Shipped]:
    return [
        *_doc_queries(METRICS_DOC),
        *_doc_queries(DEPLOY_DOC),
        *_rule_queries(),
        *_dashboard_queries(),
    ]


def deploy_doc_rule_table() -> dict[str, str]:
    """DEPLOY.md's "| `record` | `expr` |" rows."""
    rows = re.findall(r"^\| `(fercomp:[^`]+)` \| `([^`]+)` \|$", DEPLOY_DOC.read_text(), re.M)
    return dict(rows)


def evaluable(expr: str) -> str:
    """What Prometheus runs for ``expr``: Grafana variables as on the dashboard's "All",
    label_values() as the equivalent PromQL, recorded series as their rule expressions."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    if m := LABEL_VALUES_RE.match(expr.strip()):
        expr = f"group by ({m[2]}) ({m[1]})"
    recorded = recording_rules()
    return RECORDED_RE.sub(lambda m: f"({recorded[m[0]]})", expr)


def key(expr: str) -> str:
    """Normal form: Grafana variables substituted, the instance filter (which matches
    everything under "All") dropped, whitespace collapsed."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    expr = expr.replace('{instance=~".*"}', "").replace('instance=~".*",', "")
    return " ".join(expr.split())


def range_seconds(expr: str) -> float | None:
    """The one range-selector window of ``expr`` in seconds (None when it has none)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    found = {int(n) * units[u] for n, u in re.findall(r"\[(\d+)([smhd])\]", expr)}
    assert len(found) <= 1, f"several windows in {expr}: give each quantity one window"
    return float(found.pop()) if found else None
