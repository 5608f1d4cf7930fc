"""The checks of `make fleet-test` (deploy/swarm/fleet_test.sh), against the Swarm stack of
deploy/swarm/stack.yml on this machine (images already built, the node already a swarm
manager):

  1. (a) predictions written through any replica are read back through any other
  2. (b) a replica task killed mid-traffic is rescheduled, 0 client-visible failures
  3. (c) a fleet rollout under traffic: 0 failed requests, every replica on the new codec,
         Prometheus' fercomp:fleet_converged:ratio = 1 over 3 targets; then an orchestrator
         rolling update (start-first) under traffic: 0 failed, the new tasks on that codec
  4. (d) scale 3 -> 1 -> 3 under traffic; every prediction acknowledged in 1-4 is still
         readable through the load balancer
  5. `docker stack rm` and the volumes' removal leave nothing of the stack behind

Standard library only (helpers in fleet_io.py, fleet_chaos.py, fleet_rollout.py beside it);
the in-network half runs in the client image (fleet_agent.py). Prints "CHECK <n> PASS|FAIL
<what>" and "FIGURE <name> <value>" lines; exit status 1 when any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fleet_chaos import check_kill, check_scale
from fleet_io import (
    FAILED,
    LB_REST,
    NETWORK,
    PROBE,
    SERVER,
    STACK,
    Fleet,
    Probe,
    check,
    figure,
    log,
    run,
    wait_for,
)
from fleet_rollout import check_rollout, check_service_update

REPLICAS = 3
CROSS_FACES = 10  # faces classified through each replica for check 1


def wait_in_rotation(probe: Probe, n: int, timeout: float = 120) -> float:
    """Seconds until HAProxy has n server tasks UP in both backends and Prometheus scrapes n."""
    t = time.monotonic()
    wait_for(
        f"{n} replicas UP in HAProxy (gRPC and REST)",
        lambda: len(probe.haproxy_up("fercomp_grpc")) == n == len(probe.haproxy_up("fercomp_rest")),
        timeout,
        1,
    )
    wait_for(
        f"Prometheus scrapes {n} replicas",
        lambda: probe.scalar('count(up{job="fercomp"} == 1)') == n,
        timeout,
        2,
    )
    return time.monotonic() - t


def check_cross(probe: Probe, acked: list[str]) -> None:
    doc = probe.agent("cross", str(CROSS_FACES))
    written = doc["written"]
    names = sorted(doc["replicas"].values())
    acked += [pid for ids in written.values() for pid in ids]
    figure("cross_replicas", len(written))
    figure("cross_reads", doc["reads"])
    figure("cross_found", doc["found"])
    want_reads = REPLICAS * CROSS_FACES * (REPLICAS - 1)
    check(
        1,
        len(written) == REPLICAS
        and all(len(ids) == CROSS_FACES for ids in written.values())
        and not doc["errors"]
        and doc["reads"] == want_reads == doc["found"],
        f"(a) {CROSS_FACES} faces classified through each of {len(written)} replicas "
        f"({', '.join(names)}), each read back through every other replica: "
        f"{doc['found']}/{doc['reads']} found {doc['missing'][:2] or ''}{doc['errors'][:2] or ''}",
    )


def check_readback(probe: Probe, acked: list[str]) -> None:
    t = time.monotonic()
    doc = probe.agent("readback", LB_REST, stdin=json.dumps(acked), timeout=900)
    figure("readback_seconds", f"{time.monotonic() - t:.1f}")
    figure("acknowledged", doc["asked"])
    figure("acknowledged_found", doc["found"])
    check(
        4,
        doc["asked"] == len(acked) > 0 and doc["found"] == doc["asked"],
        f"(d) every prediction acknowledged in checks 1-4 is readable through the load "
        f"balancer: {doc['found']}/{doc['asked']} found {doc['missing'][:3] or ''}",
    )


def check_secrets_hidden() -> None:
    """The admin token and the database password reach the containers as Docker secrets
    (files), so nothing ``docker service inspect`` or ``docker inspect`` shows contains them."""
    label = f"label=com.docker.stack.namespace={STACK}"
    services = run(["docker", "service", "ls", "-q", "--filter", label]).split()
    containers = run(["docker", "ps", "-q", "--filter", label]).split()
    shown = run(["docker", "service", "inspect", *services])
    shown += run(["docker", "inspect", *containers])
    secrets = {
        "admin token": os.environ["FERCOMP_ADMIN_TOKEN"],
        "database password": os.environ.get("FERCOMP_DB_PASSWORD", ""),
    }
    leaked = [name for name, value in secrets.items() if value and value in shown]
    check(
        1,
        bool(services and containers and secrets["database password"]) and not leaked,
        f"no secret in `docker service inspect` ({len(services)} services) or `docker inspect` "
        f"({len(containers)} containers): {', '.join(leaked) or 'none of ' + ', '.join(secrets)} "
        "shown",
    )


def teardown(fleet: Fleet) -> None:
    t = time.monotonic()
    fleet.remove()
    figure("teardown_seconds", f"{time.monotonic() - t:.1f}")
    label = f"label=com.docker.stack.namespace={STACK}"
    left = {
        "services": run(["docker", "service", "ls", "-q", "--filter", label]).split(),
        "containers": run(["docker", "ps", "-aq", "--filter", label]).split(),
        "volumes": run(["docker", "volume", "ls", "-q", "--filter", label]).split(),
        "networks": run(["docker", "network", "ls", "-q", "--filter", f"name=^{NETWORK}$"]).split(),
        "configs": run(["docker", "config", "ls", "-q", "--filter", label]).split(),
        "probe": run(["docker", "ps", "-aq", "--filter", f"name=^{PROBE}$"]).split(),
    }
    check(5, not any(left.values()), f"the stack's removal leaves nothing behind: {left}")


def diagnose() -> None:
    subprocess.run(["docker", "service", "ls"])
    subprocess.run(["docker", "service", "ps", "--no-trunc", SERVER])
    subprocess.run(["docker", "service", "logs", "--tail", "20", SERVER])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--faces", type=Path, required=True)
    ap.add_argument("--stack-file", type=Path, required=True)
    ap.add_argument("--codec", required=True, help="the release codec check 3 rolls out")
    a = ap.parse_args()
    if not os.environ.get("FERCOMP_ADMIN_TOKEN"):
        raise SystemExit("set FERCOMP_ADMIN_TOKEN (the stack's admin token)")
    fleet = Fleet(a.stack_file)
    probe = Probe(a.faces)
    acked: list[str] = []
    fleet.remove()  # a stack left over from an interrupted run
    try:
        t = time.monotonic()
        fleet.deploy()
        figure("deploy_seconds", f"{time.monotonic() - t:.1f}")
        fleet.wait_running(REPLICAS, 420)
        figure("ready_seconds", f"{time.monotonic() - t:.1f}")
        probe.start()
        figure("in_rotation_seconds", f"{wait_in_rotation(probe, REPLICAS):.1f}")
        figure("ready_and_scraped_seconds", f"{time.monotonic() - t:.1f}")
        check_secrets_hidden()
        check_cross(probe, acked)
        check_kill(fleet, probe, acked, lambda: wait_in_rotation(probe, REPLICAS))
        check_rollout(probe, acked, a.codec)
        check_service_update(fleet, probe, acked, a.codec)
        check_scale(fleet, probe, acked, lambda: wait_in_rotation(probe, REPLICAS))
        # After every check's traffic: what the memory limit of stack.yml must hold.
        figure("server_memory_mib_max", max(fleet.memory_mib().values()))
        check_readback(probe, acked)
    except Exception as e:
        check(0, False, f"fleet step failed: {type(e).__name__}: {e}")
        diagnose()
    finally:
        probe.stop()
    if os.environ.get("FLEET_KEEP") == "1":
        log("FLEET_KEEP=1: the stack stays up (docker stack rm fercomp-fleet removes it)")
    else:
        teardown(fleet)
    verdict = f"FAILED {len(FAILED)}: " + "; ".join(FAILED) if FAILED else "all checks passed"
    print(f"fleet-test: {verdict}")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
