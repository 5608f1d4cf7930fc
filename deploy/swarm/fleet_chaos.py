"""Checks 2 and 4 of `make fleet-test` (deploy/swarm/fleet_checks.py runs them): a server task
killed mid-traffic, and scaling 3 -> 1 -> 3 under traffic. Both through HAProxy, from the probe
container on the stack's network; every acknowledged prediction id is kept for the final
read-back."""

from __future__ import annotations

import time
from collections.abc import Callable

from fleet_io import Fleet, Probe, Traffic, check, figure, log, run, wait_for

WARM_CALLS = 200  # calls served through the balancer before anything is disturbed


def _after_calls(probe: Probe, n: int = WARM_CALLS) -> None:
    base = probe.ok_2xx()
    wait_for(f"{n} calls through HAProxy", lambda: probe.ok_2xx() - base >= n, 120, 0.5)


def check_kill(
    fleet: Fleet, probe: Probe, acked: list[str], in_rotation: Callable[[], float]
) -> None:
    before = {t["id"] for t in fleet.tasks()}
    traffic = Traffic(probe)
    try:
        _after_calls(probe)
        task, container = sorted(fleet.containers().items())[0]
        log(f"docker kill of task {task[:12]} (container {container[:12]}) mid-traffic")
        t = time.monotonic()
        run(["docker", "kill", container])
        rows = fleet.wait_running(3, 300, gone=frozenset({task}))
        rescheduled = time.monotonic() - t
        new = {r["id"] for r in rows} - before
        rejoined = rescheduled + in_rotation()
        time.sleep(5)  # traffic over the three again
    finally:
        doc = traffic.stop()
    acked += doc["ids"]
    figure("kill_reschedule_seconds", f"{rescheduled:.1f}")
    figure("kill_back_in_rotation_seconds", f"{rejoined:.1f}")
    figure("kill_requests_sent", doc["sent"])
    figure("kill_requests_failed", doc["failed"])
    check(
        2,
        task not in {r["id"] for r in rows} and len(new) == 1,
        f"(b) killed task {task[:12]} replaced by a new one ({', '.join(i[:12] for i in new)}) "
        f"running and healthy {rescheduled:.1f} s after the kill, in HAProxy and Prometheus "
        f"after {rejoined:.1f} s",
    )
    check(
        2,
        doc["failed"] == 0 and doc["sent"] > WARM_CALLS,
        f"(b) traffic through HAProxy across the kill: {doc['sent']} requests in "
        f"{doc['seconds']} s, {doc['failed']} client-visible failures {doc['errors'][:2] or ''}",
    )


def check_scale(
    fleet: Fleet, probe: Probe, acked: list[str], in_rotation: Callable[[], float]
) -> None:
    traffic = Traffic(probe)
    try:
        _after_calls(probe)
        down = fleet.scale(1)
        log(f"scaled to 1 in {down:.1f} s; traffic on one replica for 10 s")
        one = len(fleet.wait_running(1, 60))
        time.sleep(10)
        up = fleet.scale(3)
        rejoined = up + in_rotation()
        time.sleep(5)
    finally:
        doc = traffic.stop()
    acked += doc["ids"]
    figure("scale_down_seconds", f"{down:.1f}")
    figure("scale_up_seconds", f"{up:.1f}")
    figure("scale_up_in_rotation_seconds", f"{rejoined:.1f}")
    figure("scale_requests_sent", doc["sent"])
    figure("scale_requests_failed", doc["failed"])
    check(
        4,
        one == 1 and doc["failed"] == 0 and doc["sent"] > WARM_CALLS,
        f"(d) scaled 3 -> 1 ({down:.1f} s) -> 3 ({up:.1f} s to healthy, {rejoined:.1f} s to "
        f"all in rotation) under traffic: {doc['sent']} requests, {doc['failed']} failed "
        f"{doc['errors'][:2] or ''}",
    )
