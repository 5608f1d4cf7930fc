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

Standard library only. Prints "CHECK <n> PASS|FAIL <what>" and "FIGURE <name> <value>" lines;
exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "fercomp"
NETWORK = f"{PROJECT}_default"
PROM = "http://127.0.0.1:9090"
REST = "http://127.0.0.1:8000"
HAPROXY_STATS = "http://127.0.0.1:8404/stats;csv"
T0 = time.monotonic()
FAILED: list[str] = []


def log(msg: str) -> None:
    print(f"[checks {time.monotonic() - T0:5.0f}s] {msg}", file=sys.stderr, flush=True)


def check(n: int, ok: bool, what: str) -> bool:
    print(f"CHECK {n} {'PASS' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        FAILED.append(f"{n}: {what}")
    return ok


def figure(name: str, value: object) -> None:
    print(f"FIGURE {name} {value}", flush=True)


def run(cmd: list[str], check_rc: bool = True, timeout: float = 600) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check_rc and p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:6])} ... exit {p.returncode}: {p.stderr.strip()[-800:]}"
        )
    return p.stdout


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def prom(query: str) -> list[dict[str, Any]]:
    """Instant query; raises on a parse/evaluation error."""
    url = f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = http(url)
    doc = json.loads(body)
    if status != 200 or doc.get("status") != "success":
        raise ValueError(f"{doc.get('errorType')}: {doc.get('error')}")
    return doc["data"]["result"]


def scalar(query: str) -> float | None:
    res = prom(query)
    return float(res[0]["value"][1]) if res else None


def wait_for(what: str, fn: Any, timeout: float, every: float = 2.0) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:
            last = e
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def client(args: list[str], faces: Path, name: str | None = None) -> list[str]:
    """docker run of the client image on the compose network, hardened like the servers."""
    cmd = [
        "docker",
        "run",
        "--rm",
        "--network",
        NETWORK,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "-v",
        f"{faces}:/faces:ro",
        "-v",
        f"{ROOT / 'deploy/local'}:/stack:ro",
    ]
    if name:
        cmd += ["--name", name]
    return cmd + args


# -- PromQL expressions from the docs, rules and dashboard --------------------------------------
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


# May be empty on a healthy stack that has shed no load (no such series was ever created).
MAY_BE_EMPTY = ['status="resource_exhausted"']


# -- the stack ---------------------------------------------------------------------------------
class Stack:
    def __init__(self, compose: list[str], faces: Path) -> None:
        self.compose = compose
        self.faces = faces

    def up(self, *services: str) -> float:
        t = time.monotonic()
        cmd = ["up", "-d", "--wait", "--wait-timeout", "400", "--no-build", *services]
        run([*self.compose, *cmd], timeout=420)
        return time.monotonic() - t

    def container(self, service: str, index: int = 1) -> str:
        return f"{PROJECT}-{service}-{index}"

    def classify_cli(self) -> dict[str, Any]:
        out = run(
            client(
                [
                    "fercomp-client:local",
                    "classify",
                    "/faces/happy",
                    "--label",
                    "happy",
                    "--server",
                    "fercomp:50051",
                    "--json",
                ],
                self.faces,
            ),
            timeout=300,
        )
        return json.loads(out)

    def traffic(self, *args: str) -> list[str]:
        return client(
            ["--entrypoint", "python", "fercomp-client:local", "/stack/stack_client.py", *args],
            self.faces,
        )


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


def check_hardening(container: str, uid: str, writable: str | None) -> None:
    info = json.loads(run(["docker", "inspect", container]))[0]
    ro = info["HostConfig"]["ReadonlyRootfs"]
    user = run(["docker", "exec", container, "id", "-u"]).strip()
    probe = subprocess.run(["docker", "exec", container, "touch", "/probe"], capture_output=True)
    refused = "refused" if probe.returncode else "ALLOWED"
    detail = f"uid {user}, ReadonlyRootfs={ro}, write to / {refused}"
    ok = ro and user == uid and probe.returncode != 0
    if writable:
        w = subprocess.run(
            [
                "docker",
                "exec",
                container,
                "sh",
                "-c",
                f"touch {writable}/.probe && rm {writable}/.probe",
            ],
            capture_output=True,
        )
        ok = ok and w.returncode == 0
        detail += f", {writable} {'writable' if w.returncode == 0 else 'NOT writable'}"
    check(4, ok, f"{container}: {detail}")


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


def haproxy_servers() -> dict[str, dict[str, str]]:
    rows = csv.DictReader(io.StringIO(http(HAPROXY_STATS)[1].decode().lstrip("# ")))
    return {
        r["svname"]: r
        for r in rows
        if r["pxname"] == "fercomp" and r["svname"].startswith("replica")
    }


def check_replicas(stack: Stack) -> None:
    # The single server is not part of this check: stop it so that the replicas do not share
    # the CPUs with it while they load their models (Prometheus keeps running).
    run([*stack.compose, "stop", "fercomp"], timeout=120)
    secs = stack.up("--no-deps", "fercomp-replica", "haproxy")
    figure("replicas_up_wait_seconds", f"{secs:.1f}")
    wait_for(
        "two replicas UP in HAProxy",
        lambda: sum(r["status"] == "UP" for r in haproxy_servers().values()) >= 2,
        60,
    )
    wait_for(
        "Prometheus scrapes both replicas",
        lambda: (
            len(
                [
                    t
                    for t in json.loads(http(f"{PROM}/api/v1/targets")[1])["data"]["activeTargets"]
                    if t["labels"]["job"] == "fercomp-replicas" and t["health"] == "up"
                ]
            )
            >= 2
        ),
        60,
    )
    check(3, True, "HAProxy has both replicas UP; Prometheus scrapes both (job fercomp-replicas)")
    victim = stack.container("fercomp-replica", 1)
    seconds = 60
    log(f"load through haproxy:50051 for {seconds} s; stopping {victim} once 200 calls are served")
    base0 = {k: int(r["hrsp_2xx"] or 0) for k, r in haproxy_servers().items()}
    load = subprocess.Popen(
        stack.traffic("load", "haproxy:50051", str(seconds)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def served(base: dict[str, int] | None = None) -> dict[str, int]:
        b = base or {}
        return {k: int(r["hrsp_2xx"] or 0) - b.get(k, 0) for k, r in haproxy_servers().items()}

    base = base0

    mid = wait_for(
        "200 calls through HAProxy", lambda: sum((m := served(base)).values()) >= 200 and m, 90, 0.5
    )
    t = time.monotonic()
    run(["docker", "stop", victim], timeout=60)
    figure("replica_stop_seconds", f"{time.monotonic() - t:.1f}")
    out, err = load.communicate(timeout=seconds + 120)
    if load.returncode != 0:
        check(3, False, f"load generator exit {load.returncode}: {err.strip()[-400:]}")
        return
    doc = json.loads(out)
    end = served(base)
    figure("lb_requests_sent", doc["sent"])
    figure("lb_requests_failed", doc["failed"])
    check(
        3,
        doc["failed"] == 0 and doc["sent"] > 0,
        f"replica stopped mid-traffic: {doc['sent']} requests, {doc['failed']} client-visible "
        f"failures {doc['errors'][:2] or ''}",
    )
    before_stop = {k: v for k, v in mid.items() if v}
    after_stop = {k: end[k] - mid.get(k, 0) for k in end if end[k] - mid.get(k, 0)}
    total = sum(before_stop.values()) or 1
    figure("lb_2xx_by_server_before_stop", json.dumps(before_stop))
    figure("lb_2xx_by_server_after_stop", json.dumps(after_stop))
    check(
        3,
        len(before_stop) >= 2 and min(before_stop.values()) >= 0.2 * total,
        f"traffic spread over replicas before the stop: {before_stop}; after: {after_stop} "
        "(HAProxy 2xx per server)",
    )
    check_hardening(stack.container("fercomp-replica", 2), "10001", "/var/lib/fercomp")
    check_hardening(
        stack.container("haproxy"),
        run(["docker", "exec", stack.container("haproxy"), "id", "-u", "haproxy"]).strip(),
        None,
    )


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
    token = __import__("os").environ["FERCOMP_ADMIN_TOKEN"]
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
