"""Check 3 of `make fleet-test` (deploy/swarm/fleet_checks.py runs it): model changes under
traffic, both ways docs/DEPLOY.md describes.

* The fleet rollout: `fercomp rollout --codec REF --wait 120` (the client image's CLI, admin
  token from the environment) through the load balancer's REST port; 0 failed requests, GET
  /v1/fleet converged, every replica's GET /v1/models on REF, and Prometheus'
  fercomp:fleet_converged:ratio = 1 with the 3 replicas scraped.
* The orchestrator's rolling update: `docker service update --env-add ... --update-order
  start-first` replaces every task; 0 failed requests, 3 new tasks, and each new replica
  serves REF from the moment it is ready (it converges to the desired models before /readyz
  turns 200), watched while the update runs.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

from fleet_io import LB_REST, Fleet, Probe, Traffic, check, figure, log, wait_for

REPLICAS = 3
UPDATE_ENV = "FERCOMP_FLEET_POLL_S=1.5"  # a harmless change that makes Swarm replace every task
SCRAPED = 'count(up{job="fercomp"} == 1)'


def _fleet(probe: Probe) -> dict[str, Any]:
    status, doc = probe.http("GET", f"{LB_REST}/v1/fleet")
    if status != 200:
        raise RuntimeError(f"GET /v1/fleet: HTTP {status} {doc}")
    return dict(doc)


def _codecs(probe: Probe) -> dict[str, str | None]:
    return {
        ip: (m["active"] or {}).get("codec") if m["ready"] else None
        for ip, m in probe.agent("models").items()
    }


def check_rollout(probe: Probe, acked: list[str], codec: str) -> None:
    before = _codecs(probe)
    if codec in before.values():
        check(3, False, f"(c) {codec} is already served ({before}): nothing to roll out")
        return
    traffic = Traffic(probe)
    try:
        time.sleep(3)
        t = time.monotonic()
        proc = subprocess.run(
            # The token goes by name: docker exec copies it from this process' environment,
            # so it never appears on a command line.
            probe.exec_cmd(
                ["fercomp", "rollout", "--server", LB_REST, "--codec", codec, "--wait", "120"],
                env=["FERCOMP_ADMIN_TOKEN"],
            ),
            capture_output=True,
            text=True,
            timeout=180,
        )
        took = time.monotonic() - t
        time.sleep(3)
    finally:
        doc = traffic.stop()
    acked += doc["ids"]
    log(f"fercomp rollout: exit {proc.returncode}\n{proc.stdout.strip()}\n{proc.stderr.strip()}")
    figure("rollout_converged_seconds", f"{took:.1f}")
    figure("rollout_requests_sent", doc["sent"])
    figure("rollout_requests_failed", doc["failed"])
    check(
        3,
        proc.returncode == 0 and "converged" in proc.stdout,
        f"(c) `fercomp rollout --codec {codec} --wait 120` through the load balancer: exit "
        f"{proc.returncode}, {took:.1f} s ({proc.stdout.strip().splitlines()[-1:] or ''})",
    )
    check(
        3,
        doc["failed"] == 0 and doc["sent"] > 0,
        f"(c) traffic during the rollout: {doc['sent']} requests, {doc['failed']} failed "
        f"{doc['errors'][:2] or ''}",
    )
    fleet = _fleet(probe)
    served = {i["instance"]: i["codec"] for i in fleet["instances"]}
    after = _codecs(probe)
    check(
        3,
        fleet["converged"]
        and fleet["counts"]["live"] == len(served) == REPLICAS
        and set(served.values()) == {codec}
        and len(after) == REPLICAS
        and set(after.values()) == {codec},
        f"(c) every replica on {codec}: GET /v1/fleet converged={fleet['converged']} "
        f"{fleet['counts']}; each replica's GET /v1/models: {sorted(after.values(), key=str)}",
    )
    t = time.monotonic()
    try:
        ratio = wait_for(
            "Prometheus: fercomp:fleet_converged:ratio == 1 over 3 replicas",
            lambda: (
                probe.scalar(SCRAPED) == REPLICAS
                and probe.scalar("count(fercomp_fleet_converged)") == REPLICAS
                and probe.scalar("fercomp:fleet_converged:ratio") == 1.0
            ),
            90,
            3,
        )
    except TimeoutError as e:
        ratio, note = False, str(e)
    else:
        note = f"after {time.monotonic() - t:.1f} s more"
    figure("prometheus_converged_after_rollout_seconds", f"{took + time.monotonic() - t:.1f}")
    value = probe.scalar("fercomp:fleet_converged:ratio")
    scraped = probe.scalar(SCRAPED)
    check(
        3,
        bool(ratio),
        f"(c) Prometheus: fercomp:fleet_converged:ratio = {value} with {scraped} replicas "
        f"scraped ({note})",
    )


def check_service_update(fleet: Fleet, probe: Probe, acked: list[str], codec: str) -> None:
    before = {t["id"] for t in fleet.tasks()}
    seen: dict[str, set[str | None]] = {}  # task address -> codecs seen while it was ready
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                for ip, c in _codecs(probe).items():
                    if c is not None:
                        seen.setdefault(ip, set()).add(c)
            except Exception as e:  # a task going away mid-read; the next round reads again
                log(f"watch: {e}")
            time.sleep(0.5)

    watcher = threading.Thread(target=watch)
    traffic = Traffic(probe)
    watcher.start()
    try:
        time.sleep(3)
        took = fleet.update("--env-add", UPDATE_ENV, "--update-order", "start-first")
        rows = fleet.wait_running(REPLICAS, 120)
        time.sleep(3)
    finally:
        done.set()
        watcher.join()
        doc = traffic.stop()
    acked += doc["ids"]
    new = {r["id"] for r in rows} - before
    wrong = {ip: sorted(c for c in cs if c) for ip, cs in seen.items() if cs - {codec}}
    after = _codecs(probe)
    state = _fleet(probe)
    figure("service_update_seconds", f"{took:.1f}")
    figure("service_update_requests_sent", doc["sent"])
    figure("service_update_requests_failed", doc["failed"])
    check(
        3,
        doc["failed"] == 0 and doc["sent"] > 0 and len(new) == REPLICAS,
        f"(c) `docker service update --env-add {UPDATE_ENV} --update-order "
        f"start-first` under traffic: {len(new)} new tasks in {took:.1f} s, {doc['sent']} "
        f"requests, {doc['failed']} failed {doc['errors'][:2] or ''}",
    )
    check(
        3,
        not wrong and set(after.values()) == {codec} and state["converged"],
        f"(c) the new tasks serve {codec} from the moment they are ready: "
        f"{len(seen)} task addresses watched every 0.5 s during the update, "
        f"other codecs seen while ready: {json.dumps(wrong) if wrong else 'none'}; "
        f"GET /v1/fleet converged={state['converged']} {state['counts']}",
    )
