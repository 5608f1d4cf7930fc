"""The checks of `make stack-test` (deploy/stack_test.sh), against the compose stack on this
machine: images already built, the compose command line given after "--".

  1. the containerised client classifies faces through the containerised server (gRPC)
  2. Prometheus scrapes the server; every PromQL expression of docs/METRICS.md,
     deploy/prometheus/rules.yml and the Grafana dashboard parses and returns data; after
     known labelled traffic the bandwidth and accuracy figures are the expected ones
  3. profile "replicas" behind HAProxy: one replica stopped mid-traffic, zero client-visible
     failures, traffic spread over the replicas
  4. predictions survive `docker compose restart`; non-root, read-only root filesystem
  5. `docker compose down -v` leaves nothing behind

Standard library only (helpers in stack_io.py, promql_sources.py, stack_hardening.py and
stack_replicas.py beside it). Prints "CHECK <n> PASS|FAIL <what>" and "FIGURE <name> <value>"
lines; exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from promql_sources import MAY_BE_EMPTY, dashboard_exprs, metrics_md_exprs, rules_exprs
from stack_hardening import check_hardening
from stack_io import (
    FAILED,
    PROJECT,
    PROM,
    REST,
    Stack,
    check,
    figure,
    http,
    log,
    prom,
    run,
    scalar,
    wait_for,
)
from stack_replicas import check_replicas


def check_client(stack: Stack) -> dict[str, Any]:
    doc = stack.classify_cli()
    s = doc["summary"]
    correct = sum(1 for r in doc["results"] if r.get("correct") is True)
    sent = s["bandwidth"]["sent_bytes"]
    ok = s["errors"] == 0 and s["images"] == 30 and all("expression" in r for r in doc["results"])
    check(
        1,
        ok,
        f"containerised client -> server (gRPC): {s['images']} faces, {s['errors']} errors, "
        f"{correct} correct, {sent} B sent ({s['bandwidth']['sent_per_face']:.1f} B/face)",
    )
    figure("client_faces", s["images"])
    figure("client_errors", s["errors"])
    return {
        "n": s["images"],
        "correct": correct,
        "bytes": sent,
        "ids": [r["request_id"] for r in doc["results"]],
    }


def check_prometheus(stack: Stack, first: dict[str, Any]) -> dict[str, Any]:
    tg = json.loads(http(f"{PROM}/api/v1/targets")[1])["data"]["activeTargets"]
    fer = [t for t in tg if t["labels"]["job"] == "fercomp"]
    check(
        2,
        bool(fer) and all(t["health"] == "up" for t in fer),
        f"Prometheus scrapes the server: {[(t['scrapeUrl'], t['health']) for t in fer]}",
    )
    sel = '{job="fercomp"}'
    # The series exist (with the first 30 faces) before the measured traffic starts, so
    # increase() over the rule's window sees all of it.
    wait_for(
        "first labelled faces scraped",
        lambda: scalar(f"sum(fercomp_labelled_total{sel})") == first["n"],
        60,
    )
    time.sleep(6)
    log("labelled traffic: 30 PublicTest faces per expression")
    t = time.monotonic()
    doc = json.loads(run(stack.traffic("labelled", "fercomp:50051"), timeout=300))
    figure("labelled_seconds", f"{time.monotonic() - t:.1f}")
    check(
        2,
        doc["failed"] == 0,
        f"labelled traffic: {doc['sent']} sent, {doc['failed']} failed {doc['errors'][:1]}",
    )
    n = first["n"] + doc["sent"] - doc["failed"]
    correct = first["correct"] + doc["correct"]
    nbytes = first["bytes"] + doc["bytes"]
    wait_for(
        "labelled traffic scraped", lambda: scalar(f"sum(fercomp_labelled_total{sel})") == n, 60
    )
    got = {
        "fercomp_received_bytes_total": (scalar(f"sum(fercomp_received_bytes_total{sel})"), nbytes),
        "fercomp_bytes_per_face_count": (scalar(f"sum(fercomp_bytes_per_face_count{sel})"), n),
        "fercomp_bytes_per_face_sum": (scalar(f"sum(fercomp_bytes_per_face_sum{sel})"), nbytes),
        "fercomp_labelled_total": (scalar(f"sum(fercomp_labelled_total{sel})"), n),
        "fercomp_correct_total": (scalar(f"sum(fercomp_correct_total{sel})"), correct),
        "fercomp_bits_per_pixel mean": (
            scalar(
                f"sum(fercomp_bits_per_pixel_sum{sel}) / sum(fercomp_bits_per_pixel_count{sel})"
            ),
            8 * nbytes / (n * 48 * 48),
        ),
    }
    for name, (value, want) in got.items():
        check(
            2,
            value is not None and math.isclose(value, want, rel_tol=1e-9),
            f"{name} = {value} (expected {want:g} from the client's own counts)",
        )
    figure("expected_bytes_per_face", f"{nbytes / n:.2f}")
    figure("expected_bpp", f"{8 * nbytes / (n * 48 * 48):.4f}")
    # The rules: the accuracy over the traffic after the first sample (increase() cannot see
    # what a series held when it was first scraped: normally the 30 faces of check 1), the
    # bandwidth rate positive. Wait for a rule evaluation after the last scrape.
    base_l = scalar(f"sum(min_over_time(fercomp_labelled_total{sel}[1h]))") or 0.0
    base_c = scalar(f"sum(min_over_time(fercomp_correct_total{sel}[1h]))") or 0.0
    figure("first_scraped_labelled", base_l)
    measured = n - base_l
    want_acc = (correct - base_c) / measured
    wait_for(
        "a rule evaluation that includes the labelled traffic",
        lambda: (scalar("sum(fercomp:labelled:increase_1h)") or 0) >= measured,
        90,
        3,
    )
    acc = scalar("sum(fercomp:accuracy:ratio_1h)")
    acc = math.nan if acc is None else acc
    check(
        2,
        abs(acc - want_acc) < 0.02,
        f"fercomp:accuracy:ratio_1h = {acc:.4f} (expected {want_acc:.4f} = "
        f"{correct - base_c:g}/{measured:g} after the first sample; all labelled: "
        f"{correct}/{n} = {correct / n:.4f})",
    )
    figure("accuracy_rule", f"{acc:.4f}")
    figure("accuracy_expected", f"{want_acc:.4f}")
    md_acc = metrics_md_exprs()
    acc_expr = next(e for e in md_acc if "fercomp_correct_total" in e)
    v = scalar(f"sum({acc_expr})")
    check(
        2,
        v is not None and abs(v - want_acc) < 0.02,
        f"METRICS.md accuracy expression = {v} (expected {want_acc:.4f})",
    )
    labelled_inc = scalar("sum(fercomp:labelled:increase_1h)")
    figure("labelled_increase_1h", labelled_inc)
    bw = scalar("sum(fercomp:bandwidth_bytes_per_second)")
    check(2, bw is not None and bw > 0, f"fercomp:bandwidth_bytes_per_second = {bw} B/s (> 0)")
    figure("bandwidth_rule_Bps", bw)
    return {"n": n, "ids": first["ids"] + doc["request_ids"]}


def make_events(token: str) -> None:
    """A model swap (to the serving classifier: 'unchanged') and one rejected bitstream, so the
    swap and error series the dashboard and METRICS.md query exist."""
    active = json.loads(http(f"{REST}/v1/models")[1])["active"]["classifier"]
    status, body = http(
        f"{REST}/v1/models/swap",
        json.dumps({"kind": "classifier", "ref": active}).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    log(f"swap to {active}: HTTP {status} {body[:120]!r}")
    status, body = http(
        f"{REST}/v1/classify",
        b"not a fercomp bitstream",
        {"Content-Type": "application/octet-stream"},
    )
    check(2, 400 <= status < 500, f"a garbage bitstream is rejected over REST: HTTP {status}")


def check_expressions() -> None:
    rec, alerts = rules_exprs()
    groups = {
        "METRICS.md": metrics_md_exprs(),
        "rules.yml (recording)": rec,
        "dashboard": dashboard_exprs(),
    }
    for where, exprs in groups.items():
        bad, empty = [], []
        for e in exprs:
            try:
                if not prom(e) and not any(m in e for m in MAY_BE_EMPTY):
                    empty.append(e)
            except ValueError as err:
                bad.append(f"{e} -> {err}")
        check(
            2,
            not bad and not empty,
            f"{where}: {len(exprs)} expressions parse and return data"
            + (f"; parse errors {bad}" if bad else "")
            + (f"; empty {empty}" if empty else ""),
        )
        figure(f"promql_{where.split()[0]}", len(exprs))
    firing = []
    for e in alerts:
        try:
            if prom(e):
                firing.append(e)
        except ValueError as err:
            firing.append(f"{e} -> {err}")
    check(
        2,
        not firing,
        f"rules.yml alerts: {len(alerts)} expressions parse, none true on a "
        f"healthy stack {firing or ''}",
    )
    rules = json.loads(http(f"{PROM}/api/v1/rules")[1])["data"]["groups"]
    unhealthy = [r["name"] for g in rules for r in g["rules"] if r["health"] != "ok"]
    check(2, not unhealthy, f"every rule evaluates (health ok) {unhealthy or ''}")


def stored_ids() -> set[str]:
    ids: set[str] = set()
    cursor = ""
    while True:
        q = urllib.parse.urlencode({"limit": 1000, **({"cursor": cursor} if cursor else {})})
        doc = json.loads(http(f"{REST}/v1/predictions?{q}")[1])
        ids |= {i["request_id"] for i in doc["items"]}
        cursor = doc.get("next_cursor") or ""
        if not cursor:
            return ids


def check_restart(stack: Stack, want: set[str]) -> None:
    before = wait_for("predictions stored", lambda: (s := stored_ids()) >= want and s, 60)
    t = time.monotonic()
    run([*stack.compose, "restart", "fercomp"], timeout=120)
    wait_for("server ready after restart", lambda: http(f"{REST}/readyz")[0] == 200, 120, 1)
    figure("restart_to_ready_seconds", f"{time.monotonic() - t:.1f}")
    after = stored_ids()
    check(
        4,
        before <= after and want <= after,
        f"prediction store survives `docker compose restart`: {len(before)} before, "
        f"{len(after)} after, {len(before - after)} lost",
    )
    check_hardening(stack.container("fercomp"), "10001", "/var/lib/fercomp")


def check_down(stack: Stack) -> None:
    t = time.monotonic()
    run([*stack.compose, "down", "-v", "--remove-orphans"], timeout=180)
    figure("down_seconds", f"{time.monotonic() - t:.1f}")
    label = f"label=com.docker.compose.project={PROJECT}"
    left = {
        "containers": run(["docker", "ps", "-aq", "--filter", label]).split(),
        "volumes": run(["docker", "volume", "ls", "-q", "--filter", label]).split(),
        "networks": run(["docker", "network", "ls", "-q", "--filter", label]).split(),
    }
    check(5, not any(left.values()), f"`docker compose down -v` leaves nothing: {left}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=Path, required=True)
    ap.add_argument("compose", nargs="+")
    a = ap.parse_args()
    stack = Stack(a.compose, a.faces)
    token = os.environ["FERCOMP_ADMIN_TOKEN"]
    run([*stack.compose, "down", "-v", "--remove-orphans"], timeout=180)
    try:
        secs = stack.up("fercomp", "prometheus")
        figure("up_wait_seconds", f"{secs:.1f}")
        first = check_client(stack)
        prom_state = check_prometheus(stack, first)
        make_events(token)
        time.sleep(20)  # two scrapes and a rule evaluation
        check_expressions()
        check_restart(stack, set(prom_state["ids"]))
        check_replicas(stack)
    except Exception as e:
        check(0, False, f"stack step failed: {type(e).__name__}: {e}")
        subprocess.run([*stack.compose, "ps", "-a"])
        subprocess.run([*stack.compose, "logs", "--tail", "30"])
    check_down(stack)
    verdict = f"FAILED {len(FAILED)}: " + "; ".join(FAILED) if FAILED else "all checks passed"
    print(f"stack-test: {verdict}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
