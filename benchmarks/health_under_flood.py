"""Health checks under a classify flood: do they still answer within a probe's deadline?

Starts ``fercomp serve`` as a child process (bundled models, default settings apart from the
ports and the store), pre-encodes faces with the repository's default codec, then per
transport:

  grpc   --clients threads call unary ``Classify`` back to back (on --channels channels) for
         the whole phase; after --warmup-s, --checks ``grpc.health.v1.Health/Check`` calls on
         a channel of their own, one every --interval-s, each with a --deadline-s deadline
  http   the same with ``POST /v1/classify`` (one ``httpx.Client`` per flood thread), probed
         with ``GET /readyz`` and ``GET /healthz``

and prints, per probe, how many of the checks answered "serving" within the deadline, their
latency, and what the flood got (ok / refused / other) meanwhile.

    .venv/bin/python -m benchmarks.health_under_flood                 # 200 threads, 40 checks
    .venv/bin/python -m benchmarks.health_under_flood --transport grpc --json health.json

Client and server share the machine: on a small CPU the 200 client threads take CPU from the
server, which is part of the overload a probe must get through.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.common import (
    benchmark_parser,
    format_table,
    load_faces,
    machine,
    serve_process,
    write_json,
)
from core.artifacts import ModelRepository, bundled_models_dir, load_codec
from proto.fercomp.v1 import fercomp_pb2 as pb
from proto.fercomp.v1 import fercomp_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = [
    ("probe", "probe"), ("answered", "answered in deadline"), ("p50_ms", "p50 ms"),
    ("max_ms", "max ms"), ("failures", "failures"), ("flood_s", "flood s"),
    ("flood_ok", "flood ok"), ("flood_ok_per_s", "ok/s"), ("flood_refused", "flood refused"),
    ("refused_p99_ms", "refused p99 ms"), ("flood_other", "flood other"),
]  # fmt: skip


def start_server(
    models: Path, device: str, db: Path
) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    return serve_process(db, device, models)


def flood(
    n: int, call: Callable[[int], str], stop: threading.Event
) -> tuple[list[threading.Thread], Counter[str], list[float]]:
    """``n`` threads calling ``call(k)`` back to back until ``stop``; outcomes counted, and
    the latency of each refusal kept."""
    outcomes: Counter[str] = Counter()
    refusal_s: list[float] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            outcome = call(k)
            with lock:
                outcomes[outcome] += 1
                if outcome == "refused":
                    refusal_s.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    return threads, outcomes, refusal_s


def probe(name: str, check: Callable[[], bool], n: int, interval: float) -> dict[str, Any]:
    """``n`` checks, one every ``interval`` s; ``check`` returns True when it answered
    'serving' within its deadline (and raises or returns False otherwise)."""
    latencies, failures = [], Counter[str]()
    answered = 0
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            ok = check()
            outcome = "ok" if ok else "not_serving"
        except grpc.RpcError as e:
            ok, outcome = False, e.code().name
        except httpx.HTTPError as e:
            ok, outcome = False, type(e).__name__
        latencies.append(time.perf_counter() - t0)
        answered += ok
        if not ok:
            failures[outcome] += 1
        time.sleep(max(0.0, interval - (time.perf_counter() - t0)))
    ms = sorted(x * 1e3 for x in latencies)
    return {
        "probe": name, "answered": f"{answered}/{n}", "answered_n": answered, "checks": n,
        "p50_ms": ms[len(ms) // 2], "max_ms": ms[-1],
        "failures": ", ".join(f"{k} {v}" for k, v in failures.items()) or "-",
    }  # fmt: skip


def grpc_phase(target: str, reqs: list[pb.ClassifyRequest], args: Any) -> list[dict[str, Any]]:
    channels = [grpc.insecure_channel(target) for _ in range(args.channels)]
    stubs = [fercomp_pb2_grpc.FerServiceStub(c) for c in channels]  # type: ignore[no-untyped-call]
    probe_channel = grpc.insecure_channel(target)  # separate: a probe has its own connection
    health = health_pb2_grpc.HealthStub(probe_channel)
    health.Check(health_pb2.HealthCheckRequest(), timeout=30)  # connected before the flood

    def classify(k: int) -> str:
        try:
            stubs[k % len(stubs)].Classify(reqs[k % len(reqs)], timeout=args.request_timeout_s)
            return "ok"
        except grpc.RpcError as e:
            return "refused" if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED else "other"

    def check() -> bool:
        r = health.Check(health_pb2.HealthCheckRequest(), timeout=args.deadline_s)
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    stop = threading.Event()
    t0 = time.perf_counter()
    threads, outcomes, refusal_s = flood(args.clients, classify, stop)
    try:
        time.sleep(args.warmup_s)
        row = probe("grpc.health.v1 Check", check, args.checks, args.interval_s)
    finally:
        stop.set()
        for t in threads:
            t.join(args.request_timeout_s + 5)
        seconds = time.perf_counter() - t0
        for c in (*channels, probe_channel):
            c.close()
    return [row | _flood(outcomes, seconds, refusal_s)]


def http_phase(base: str, bodies: list[bytes], args: Any) -> list[dict[str, Any]]:
    clients = [
        httpx.Client(base_url=base, timeout=args.request_timeout_s + 5) for _ in range(args.clients)
    ]
    prober = httpx.Client(base_url=base, timeout=args.deadline_s)
    prober.get("/healthz")  # connected before the flood
    headers = {"content-type": "application/octet-stream"}

    def classify(k: int) -> str:
        try:
            r = clients[k].post("/v1/classify", content=bodies[k % len(bodies)], headers=headers)
        except httpx.HTTPError:
            return "other"
        return "ok" if r.status_code == 200 else "refused" if r.status_code == 429 else "other"

    def get(path: str) -> Callable[[], bool]:
        return lambda: prober.get(path).status_code == 200

    stop = threading.Event()
    t0 = time.perf_counter()
    threads, outcomes, refusal_s = flood(args.clients, classify, stop)
    try:
        time.sleep(args.warmup_s)
        rows = [
            probe("REST /readyz", get("/readyz"), args.checks, args.interval_s),
            probe("REST /healthz", get("/healthz"), args.checks, args.interval_s),
        ]
    finally:
        stop.set()
        for t in threads:
            t.join(args.request_timeout_s + 10)
        seconds = time.perf_counter() - t0
        for c in (*clients, prober):
            c.close()
    return [r | _flood(outcomes, seconds, refusal_s) for r in rows]


def _flood(outcomes: Counter[str], seconds: float, refusal_s: list[float]) -> dict[str, Any]:
    """What the flood got over its whole phase (both REST probes share one phase)."""
    counts = {f"flood_{k}": outcomes[k] for k in ("ok", "refused", "other")}
    refused = sorted(refusal_s)
    p99 = refused[int(0.99 * (len(refused) - 1))] * 1e3 if refused else None
    return counts | {
        "flood_s": seconds,
        "flood_ok_per_s": outcomes["ok"] / seconds,
        "refused_p99_ms": p99,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.health_under_flood", __doc__)
    p.add_argument("--transport", choices=("grpc", "http", "both"), default="both")
    p.add_argument("--clients", type=int, default=200, help="flood threads")
    p.add_argument("--channels", type=int, default=8, help="gRPC channels the flood uses")
    p.add_argument("--checks", type=int, default=40, help="health checks per probe")
    p.add_argument("--deadline-s", type=float, default=1.0, help="deadline of one check")
    p.add_argument("--interval-s", type=float, default=0.1, help="time between checks")
    p.add_argument("--warmup-s", type=float, default=3.0, help="flood before the first check")
    p.add_argument("--request-timeout-s", type=float, default=10.0, help="flood call deadline")
    p.add_argument("--faces", type=int, default=32)
    p.add_argument("--models", type=Path, default=None)
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    models = (args.models or bundled_models_dir()).resolve()
    repo = ModelRepository(models)
    faces, source = load_faces(args.faces)
    codec, manifest = load_codec(repo.path(repo.defaults()["codec"]))
    bodies = codec.encode(faces)
    reqs = [pb.ClassifyRequest(bitstream=b, client_id="flood") for b in bodies]

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fercomp-health-") as tmp:
        proc, ports = start_server(models, args.device, Path(tmp) / "predictions.sqlite3")
        try:
            if args.transport in ("grpc", "both"):
                rows += grpc_phase(f"127.0.0.1:{ports['grpc_port']}", reqs, args)
            if args.transport in ("http", "both"):
                rows += http_phase(f"http://127.0.0.1:{ports['http_port']}", bodies, args)
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)

    print(f"faces: {source}; codec {manifest.ref}; device {args.device}")
    print(
        f"flood: {args.clients} threads for {args.warmup_s:g} s, then {args.checks} checks "
        f"{args.interval_s:g} s apart, deadline {args.deadline_s:g} s each"
    )
    print(format_table(COLUMNS, rows))
    write_json(
        args.json,
        {"benchmark": "health_under_flood", "argv": list(sys.argv[1:] if argv is None else argv),
         "codec": manifest.ref, "rows": rows, "machine": machine()},
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
