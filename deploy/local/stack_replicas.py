"""Check 3 of `make stack-test`: profile "replicas" behind HAProxy, one replica stopped
mid-traffic, zero client-visible failures, traffic spread over the replicas
(deploy/local/stack_checks.py runs it)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time

from stack_hardening import check_hardening
from stack_io import HAPROXY_STATS, PROM, Stack, check, figure, http, log, run, wait_for


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
    secs = stack.up("--no-deps", "postgres", "fercomp-replica", "haproxy")
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
    check_hardening(stack.container("fercomp-replica", 2), "10001", None)
    check_hardening(
        stack.container("haproxy"),
        run(["docker", "exec", stack.container("haproxy"), "id", "-u", "haproxy"]).strip(),
        None,
    )
