"""What the checks of `make fleet-test` share: the Swarm stack (docker service commands), the
probe container on its overlay network (deploy/swarm/fleet_agent.py runs there), and the
printing helpers of deploy/local/stack_io.py (CHECK/FIGURE lines, run, wait_for).
Standard library only; runs on the host."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "local"))

from stack_io import FAILED, check, figure, log, run, wait_for  # noqa: E402

__all__ = ["FAILED", "Fleet", "Probe", "Traffic", "check", "figure", "log", "run", "wait_for"]

STACK = "fercomp-fleet"
NETWORK = "fercomp-fleet"  # stack.yml names its overlay network
SERVER = f"{STACK}_server"
PROBE = "fercomp-fleet-probe"
LB_GRPC = "haproxy:50051"
LB_REST = "http://haproxy:8000"
PROM = "http://prometheus:9090"
HAPROXY_STATS = "http://haproxy:8404/stats;csv"
TRAFFIC_RATE = 20.0  # classify calls per second through the balancer during checks 2-4


class Probe:
    """A client-image container on the stack's network; each call runs fleet_agent.py in it."""

    def __init__(self, faces: Path) -> None:
        self.faces = faces

    def start(self) -> None:
        run(["docker", "rm", "-f", PROBE], check_rc=False)
        run(
            [
                "docker", "run", "-d", "--name", PROBE, "--network", NETWORK,
                "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges:true",
                "-v", f"{self.faces}:/faces:ro", "-v", f"{HERE}:/fleet:ro",
                "--entrypoint", "sleep", "fercomp-client:local", "infinity",
            ]
        )  # fmt: skip

    def stop(self) -> None:
        run(["docker", "rm", "-f", PROBE], check_rc=False)

    def exec_cmd(self, args: list[str], env: list[str] | None = None) -> list[str]:
        """docker exec of args in the probe; env: names of variables docker copies from this
        process' environment (values never on a command line)."""
        e = [x for name in env or [] for x in ("-e", name)]
        return ["docker", "exec", "-i", *e, PROBE, *args]

    def cmd(self, *args: str) -> list[str]:
        return self.exec_cmd(["python", "/fleet/fleet_agent.py", *args])

    def agent(self, *args: str, stdin: str = "", timeout: float = 600) -> Any:
        p = subprocess.run(
            self.cmd(*args), input=stdin, capture_output=True, text=True, timeout=timeout
        )
        if p.returncode != 0:
            raise RuntimeError(f"agent {args[:2]} exit {p.returncode}: {p.stderr.strip()[-600:]}")
        return json.loads(p.stdout.strip().splitlines()[-1])

    def http(self, method: str, url: str, *headers: str, body: str = "") -> tuple[int, Any]:
        doc = self.agent("http", method, url, *headers, stdin=body)
        try:
            return doc["status"], json.loads(doc["body"])
        except json.JSONDecodeError:
            return doc["status"], doc["body"]

    def prom(self, query: str) -> list[dict[str, Any]]:
        from urllib.parse import urlencode

        status, doc = self.http("GET", f"{PROM}/api/v1/query?" + urlencode({"query": query}))
        if status != 200 or doc.get("status") != "success":
            raise ValueError(f"PromQL {query!r}: HTTP {status} {doc}")
        return list(doc["data"]["result"])

    def scalar(self, query: str) -> float | None:
        res = self.prom(query)
        return float(res[0]["value"][1]) if res else None

    def haproxy_up(self, backend: str = "fercomp_grpc") -> dict[str, int]:
        """Per UP server of the backend: its 2xx count so far."""
        _, text = self.http("GET", HAPROXY_STATS)
        rows = csv.DictReader(io.StringIO(str(text).lstrip("# ")))
        return {
            f"{r['svname']}={r['addr']}": int(r["hrsp_2xx"] or 0)
            for r in rows
            if r["pxname"] == backend and r["svname"].startswith("replica") and r["status"] == "UP"
        }

    def ok_2xx(self) -> int:
        return sum(self.haproxy_up().values())


class Traffic:
    """Classify calls through the load balancer (at most ``rate`` a second, 4 in flight) from
    start until stop(); stop() returns sent, failed, errors and every acknowledged prediction
    id. The rate leaves the cores room to load models: with 4 calls in flight back to back
    (about 36 a second here), bringing new replicas up took minutes on the two cores (a rolling
    update of 3 tasks 396 s, scaling 1 -> 3 118 s; all three at deploy, without traffic, 20 s)."""

    def __init__(self, probe: Probe, target: str = LB_GRPC, rate: float = TRAFFIC_RATE) -> None:
        self.proc = subprocess.Popen(
            probe.cmd("load", target, str(rate)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        first = self.proc.stdout.readline()  # the agent says when its workers run
        if '"started"' not in first:
            self.proc.kill()
            raise RuntimeError(f"traffic did not start: {first!r} {self.proc.stderr.read()[-600:]}")
        self.t0 = time.monotonic()

    def stop(self) -> dict[str, Any]:
        out, err = self.proc.communicate("stop\n", timeout=120)
        if self.proc.returncode != 0:
            raise RuntimeError(f"traffic exit {self.proc.returncode}: {err.strip()[-600:]}")
        doc: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return doc


class Fleet:
    """The stack on this swarm (docker stack/service commands)."""

    def __init__(self, stack_file: Path) -> None:
        self.stack_file = stack_file

    def deploy(self) -> None:
        run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(self.stack_file),
             STACK])  # fmt: skip

    def tasks(self, service: str = SERVER) -> list[dict[str, str]]:
        """Tasks whose desired state is running: id, name, state (e.g. "Running 5 seconds ago")."""
        fmt = "{{.ID}}\t{{.Name}}\t{{.CurrentState}}"
        out = run(["docker", "service", "ps", service, "--no-trunc", "--filter",
                   "desired-state=running", "--format", fmt])  # fmt: skip
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        return [{"id": r[0], "name": r[1], "state": r[2]} for r in rows]

    def containers(self) -> dict[str, str]:
        """Running server task id -> its container id."""
        out = run(["docker", "ps", "--no-trunc", "--filter",
                   f"label=com.docker.swarm.service.name={SERVER}", "--format",
                   '{{.ID}}\t{{.Label "com.docker.swarm.task.id"}}'])  # fmt: skip
        rows = [line.split("\t") for line in out.splitlines() if line.strip()]
        return {task: cid for cid, task in rows}

    def wait_running(
        self, n: int, timeout: float, gone: frozenset[str] = frozenset(), service: str = SERVER
    ) -> list[dict[str, str]]:
        """Wait until exactly n tasks of the service are running (healthy: Swarm reports a task
        with a health check as running only once it passed) and none of the task ids ``gone``
        is among them (Swarm takes a moment to notice a killed container)."""

        def settled() -> list[dict[str, str]] | None:
            tasks = self.tasks(service)
            up = [t for t in tasks if t["state"].startswith("Running")]
            ok = len(up) == n == len(tasks) and not gone & {t["id"] for t in tasks}
            return up if ok else None

        rows: list[dict[str, str]] = wait_for(f"{n} running tasks of {service}", settled, timeout)
        return rows

    def memory_mib(self) -> dict[str, float]:
        """Resident memory of each running server container (docker stats), MiB."""
        out = run(["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}",
                   *self.containers().values()])  # fmt: skip
        units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0}
        mem = {}
        for line in out.splitlines():
            name, usage = line.split("\t")
            value = usage.split("/")[0].strip()
            unit = value[-3:]
            mem[name] = round(float(value[:-3]) * units[unit], 1)
        return mem

    def scale(self, n: int) -> float:
        t = time.monotonic()
        run(["docker", "service", "scale", "--detach=false", f"{SERVER}={n}"], timeout=600)
        return time.monotonic() - t

    def update(self, *args: str) -> float:
        t = time.monotonic()
        run(["docker", "service", "update", "--detach=false", "--quiet", *args, SERVER],
            timeout=900)  # fmt: skip
        return time.monotonic() - t

    def remove(self, timeout: float = 180) -> None:
        """docker stack rm, then wait until its containers are gone, and remove its network
        (when the stack's removal left it) and volumes. Nothing to do when none is deployed."""
        label = f"label=com.docker.stack.namespace={STACK}"
        run(["docker", "stack", "rm", STACK], check_rc=False)
        wait_for(
            "the stack's containers gone",
            lambda: not run(["docker", "ps", "-aq", "--filter", label]).split(),
            timeout,
            1,
        )

        def network_gone() -> bool:
            if not run(["docker", "network", "ls", "-q", "--filter", f"name=^{NETWORK}$"]).split():
                return True
            run(["docker", "network", "rm", NETWORK], check_rc=False)  # once its tasks are gone
            return False

        wait_for(f"network {NETWORK} removed", network_gone, 60, 2)
        volumes = run(["docker", "volume", "ls", "-q", "--filter", label]).split()
        if volumes:
            run(["docker", "volume", "rm", *volumes])
