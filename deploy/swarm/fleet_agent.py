"""The in-network side of `make fleet-test`: run inside the client image (fercomp-client), in a
container attached to the stack's overlay network (deploy/swarm/fleet_io.py starts it with
deploy/swarm at /fleet and the test faces at /faces), where the replicas' own addresses
(tasks.server) and the stack's services are reachable. One JSON document on stdout per call.

  http METHOD URL [HEADER:VALUE ...]   one HTTP call (body from stdin for POST)
  models                              each replica's readiness and GET /v1/models "active"
  cross N                             N faces classified through each replica directly, each
                                      prediction read back through every other replica
  load TARGET RATE                    classify through TARGET (at most RATE calls a second, 4
                                      in flight) until a line on stdin (or EOF); every
                                      acknowledged prediction id
  readback BASE_URL                   GET BASE_URL/v1/predictions/<id> for each id on stdin

Faces are encoded once per container (the client's default codec) and kept in /tmp, so the
traffic measures the servers, not the encoder.
"""

from __future__ import annotations

import json
import pickle
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from itertools import cycle
from pathlib import Path
from typing import Any

import grpc

from client.channel import make_channel
from client.sdk import FerClient
from proto.fercomp.v1 import fercomp_pb2, fercomp_pb2_grpc

SERVER_TASKS = "tasks.server"
PAYLOADS = Path("/tmp/fleet-payloads.pickle")
FACES = Path("/faces")
MAX_LOAD_S = 900.0  # a load that is never told to stop ends anyway


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def payloads() -> list[bytes]:
    """Every test face, encoded once (cached in /tmp for the container's life)."""
    if PAYLOADS.exists():
        cached: list[bytes] = pickle.loads(PAYLOADS.read_bytes())
        return cached
    paths = sorted(p for d in sorted(FACES.iterdir()) if d.is_dir() for p in d.glob("*.png"))
    if not paths:
        raise SystemExit(f"no faces under {FACES}")
    with FerClient("unused:1") as client:
        out = [client.encode(p)[1].payload for p in paths]
    PAYLOADS.write_bytes(pickle.dumps(out))
    return out


class Classifier:
    """A gRPC channel to one target; classify() returns the stored prediction's id (the SDK's
    Prediction does not carry it)."""

    def __init__(self, target: str) -> None:
        self.channel = make_channel(target, retries=3)
        self.stub = fercomp_pb2_grpc.FerServiceStub(self.channel)  # type: ignore[no-untyped-call]

    def classify(self, payload: bytes) -> str:
        req = fercomp_pb2.ClassifyRequest(request_id=uuid.uuid4().hex, bitstream=payload)
        resp = self.stub.Classify(req, timeout=30.0)
        return str(resp.prediction_id)

    def close(self) -> None:
        self.channel.close()


def task_addresses() -> list[str]:
    infos = socket.getaddrinfo(SERVER_TASKS, 8000, socket.AF_INET, socket.SOCK_STREAM)
    return sorted({str(i[4][0]) for i in infos})


def instance_of(ip: str) -> str:
    status, body = http("GET", f"http://{ip}:8000/v1/fleet")
    return str(json.loads(body).get("instance", "?")) if status == 200 else f"? (HTTP {status})"


def models() -> dict[str, Any]:
    """Per task address: ready (GET /readyz 200) and the active models (GET /v1/models)."""
    out: dict[str, Any] = {}
    for ip in task_addresses():
        try:
            ready = http("GET", f"http://{ip}:8000/readyz")[0] == 200
            status, body = http("GET", f"http://{ip}:8000/v1/models")
        except OSError as e:  # a task that is starting or going away
            out[ip] = {"ready": False, "active": None, "error": str(e)}
            continue
        active = json.loads(body).get("active") if status == 200 else None
        out[ip] = {"ready": ready, "active": active, "error": "" if active else f"HTTP {status}"}
    return out


def cross(n: int) -> dict[str, Any]:
    faces = payloads()
    ips = task_addresses()
    written: dict[str, list[str]] = {}
    errors: list[str] = []
    for i, ip in enumerate(ips):
        c = Classifier(f"{ip}:50051")
        try:
            written[ip] = [c.classify(faces[(i * n + k) % len(faces)]) for k in range(n)]
        except grpc.RpcError as e:
            errors.append(f"classify via {ip}: {e.code()} {e.details()}")
        finally:
            c.close()
    reads = found = 0
    missing: list[str] = []
    for writer, ids in written.items():
        for reader in ips:
            if reader == writer:
                continue
            for pid in ids:
                reads += 1
                status, _ = http("GET", f"http://{reader}:8000/v1/predictions/{pid}")
                if status == 200:
                    found += 1
                elif len(missing) < 5:
                    missing.append(f"{pid} written via {writer}, HTTP {status} via {reader}")
    return {
        "replicas": {ip: instance_of(ip) for ip in ips},
        "written": written,
        "reads": reads,
        "found": found,
        "missing": missing,
        "errors": errors,
    }


def load(target: str, rate: float) -> dict[str, Any]:
    items = cycle(payloads())
    lock = threading.Lock()
    stop = threading.Event()
    ids: list[str] = []
    stats: dict[str, Any] = {"sent": 0, "failed": 0, "errors": []}
    client = Classifier(target)
    t0 = time.monotonic()
    due = [t0]  # when the next call may start: calls start at most `rate` per second

    def worker() -> None:
        while not stop.is_set() and time.monotonic() - t0 < MAX_LOAD_S:
            with lock:
                payload = next(items)
                stats["sent"] += 1
                start, due[0] = due[0], max(due[0], time.monotonic()) + 1.0 / rate
            time.sleep(max(0.0, start - time.monotonic()))
            try:
                pid = client.classify(payload)
                with lock:
                    ids.append(pid)
            except grpc.RpcError as e:
                with lock:
                    stats["failed"] += 1
                    if len(stats["errors"]) < 5:
                        when = time.strftime("%H:%M:%S")
                        stats["errors"].append(f"{when} {e.code()} {e.details()}")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    print(json.dumps({"started": True}), flush=True)
    sys.stdin.readline()  # the caller writes a line (or closes stdin) to stop
    stop.set()
    for t in threads:
        t.join()
    client.close()
    return {**stats, "seconds": round(time.monotonic() - t0, 1), "ids": ids}


def readback(base: str, ids: list[str]) -> dict[str, Any]:
    def get(pid: str) -> tuple[str, int]:
        for _ in range(3):  # a 5xx from a replica that is going away is retried, a 404 is not
            status, _ = http("GET", f"{base}/v1/predictions/{pid}")
            if status < 500:
                break
            time.sleep(0.5)
        return pid, status

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(get, ids))
    bad = [f"{pid}: HTTP {status}" for pid, status in results if status != 200]
    return {"asked": len(ids), "found": len(ids) - len(bad), "missing": bad[:10]}


def main(argv: list[str]) -> Any:
    cmd, args = argv[0], argv[1:]
    if cmd == "http":
        method, url = args[0], args[1]
        headers = dict(h.split(":", 1) for h in args[2:])
        body = sys.stdin.buffer.read() if method == "POST" else None
        status, text = http(method, url, body, headers)
        return {"status": status, "body": text}
    if cmd == "models":
        return models()
    if cmd == "cross":
        return cross(int(args[0]))
    if cmd == "load":
        return load(args[0], float(args[1]))
    if cmd == "readback":
        return readback(args[0], json.loads(sys.stdin.read()))
    raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])), flush=True)
