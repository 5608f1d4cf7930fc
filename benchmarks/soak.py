"""Overload and soak: what the served process does above its capacity, over minutes.

Starts ``fercomp serve`` as a child process (so its RSS is the server's alone, read from
/proc/PID/status), pre-encodes faces with the repository's default codec, then:

  capacity   closed loop: --clients unary callers for --capacity-s; faces/s and idle latency
  streams    opens --max-streams + --extra-streams ClassifyStreams at once: how many are
             admitted, how fast the rest are refused (RESOURCE_EXHAUSTED)
  overload   open loop at --overload x capacity for --soak-s, while the admitted streams send
             one face a second: every --sample-s a row with what was offered, accepted and
             refused, accepted and refusal latency, and the server's RSS
  recovery   load stops; --recovery sequential calls must all succeed, at idle latency again

    .venv/bin/python -m benchmarks.soak --soak-s 120 --json soak.json

The server runs with a small queue (--max-queue-size) so that overload shows up as refusals
within the run rather than as a long queue. Client and server share the machine: on a small
CPU the client's own work lowers the capacity it measures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from benchmarks.common import (
    benchmark_parser,
    format_table,
    load_faces,
    machine,
    ms_stats,
    serve_process,
    write_json,
)
from core.artifacts import ModelRepository, bundled_models_dir, load_codec
from proto.fercomp.v1 import fercomp_pb2 as pb
from proto.fercomp.v1 import fercomp_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
REFUSED = grpc.StatusCode.RESOURCE_EXHAUSTED
COLUMNS = [
    ("t_s", "t s"), ("offered", "offered"), ("ok", "ok"), ("refused", "refused"),
    ("other", "other errors"), ("ok_p50_ms", "ok p50 ms"), ("ok_p99_ms", "ok p99 ms"),
    ("refused_p99_ms", "refused p99 ms"), ("rss_mib", "RSS MiB"),
]  # fmt: skip


def start_server(args: argparse.Namespace, db: Path) -> tuple[subprocess.Popen[str], dict]:
    settings = {
        "FERCOMP_MAX_QUEUE_SIZE": str(args.max_queue_size),
        "FERCOMP_MAX_STREAMS": str(args.max_streams),
        "FERCOMP_GRPC_WORKERS": str(args.max_streams + 16),
    }
    return serve_process(db, args.device, args.models, settings)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Log:
    """(finish time, latency, status code name) of every call, appended from gRPC threads."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, str]] = []
        self.lock = threading.Lock()

    def add(self, t0: float, code: str) -> None:
        t = time.perf_counter()
        with self.lock:
            self.rows.append((t, t - t0, code))

    def window(self, start: float, end: float) -> list[tuple[float, float, str]]:
        with self.lock:
            return [r for r in self.rows if start <= r[0] < end]


def _p(latencies: list[float], q: int) -> float:
    return ms_stats(latencies, (q,))[f"p{q}_ms"] if latencies else float("nan")


def capacity(stub: Any, reqs: list[pb.ClassifyRequest], clients: int, seconds: float) -> dict:
    done, lat, lock = [0], [], threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            stub.Classify(reqs[i % len(reqs)], timeout=60)
            with lock:
                done[0] += 1
                lat.append(time.perf_counter() - t0)
            i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return {"faces_per_s": done[0] / elapsed, "p50_ms": _p(lat, 50), "p99_ms": _p(lat, 99)}


def open_streams(
    stub: Any, reqs: list[pb.ClassifyRequest], n: int, stop: threading.Event, log: Log
) -> dict:
    """``n`` streams at once; admitted ones send a face a second until ``stop``."""
    outcome: list[tuple[str, float]] = []
    lock = threading.Lock()

    def one(k: int) -> None:
        def items() -> Iterator[pb.ClassifyRequest]:
            i = k
            while not stop.is_set():
                yield reqs[i % len(reqs)]
                i += 1
                stop.wait(1.0)

        t0 = time.perf_counter()
        first = True
        try:
            for r in stub.ClassifyStream(items(), timeout=3600):
                if first:
                    with lock:
                        outcome.append(("admitted", time.perf_counter() - t0))
                    first = False
                log.add(time.perf_counter(), r.error.code or "OK")
        except grpc.RpcError as e:
            with lock:
                outcome.append((e.code().name, time.perf_counter() - t0))

    for k in range(n):
        threading.Thread(target=one, args=(k,), daemon=True).start()
    while True:  # every stream is either admitted (first answer) or refused
        with lock:
            if len(outcome) >= n:
                break
        time.sleep(0.05)
    refused = [s for c, s in outcome if c == REFUSED.name]
    return {
        "opened": n,
        "admitted": sum(c == "admitted" for c, _ in outcome),
        "refused": len(refused),
        "refused_p50_ms": _p(refused, 50),
        "refused_max_ms": max(refused) * 1e3 if refused else float("nan"),
    }


def overload(
    stub: Any, reqs: list[pb.ClassifyRequest], rate: float, args: argparse.Namespace, pid: int
) -> list[dict]:
    """Open loop at ``rate`` calls/s for --soak-s; a row every --sample-s."""
    log, offered, rows = Log(), [0], []
    start = time.perf_counter()
    end = start + args.soak_s
    in_flight = threading.Semaphore(4096)  # the client's own bound, so it cannot run away

    def done(fut: Any, t0: float) -> None:
        in_flight.release()
        exc = fut.exception()
        log.add(t0, "OK" if exc is None else exc.code().name)

    def sample(t_lo: float, t_hi: float) -> dict:
        rows_ = log.window(t_lo, t_hi)
        ok = [lat for _, lat, c in rows_ if c == "OK"]
        refused = [lat for _, lat, c in rows_ if c == REFUSED.name]
        return {
            "t_s": round(t_hi - start), "offered": offered[0], "ok": len(ok),
            "refused": len(refused), "other": len(rows_) - len(ok) - len(refused),
            "ok_p50_ms": _p(ok, 50), "ok_p99_ms": _p(ok, 99),
            "refused_p99_ms": _p(refused, 99), "rss_mib": rss_mib(pid),
        }  # fmt: skip

    rows.append({"t_s": 0, "rss_mib": rss_mib(pid)})
    next_sample, next_call, i = start + args.sample_s, start, 0
    while (now := time.perf_counter()) < end:
        if now >= next_sample:
            rows.append(sample(next_sample - args.sample_s, next_sample))
            offered[0] = 0
            next_sample += args.sample_s
        if now < next_call:
            time.sleep(min(next_call - now, 0.01))
            continue
        next_call += 1.0 / rate
        if not in_flight.acquire(blocking=False):
            continue  # counted as not offered: the client is the bottleneck then
        t0 = time.perf_counter()
        fut = stub.Classify.future(reqs[i % len(reqs)], timeout=30)
        fut.add_done_callback(lambda f, t0=t0: done(f, t0))
        offered[0] += 1
        i += 1
    time.sleep(2.0)  # let the last calls finish before the final row
    rows.append(sample(next_sample - args.sample_s, time.perf_counter()))
    return rows


def rss_slope(rows: list[dict]) -> float:
    """Least-squares RSS growth over the soak, MiB per minute (0 = flat)."""
    t = np.array([r["t_s"] for r in rows], dtype=float)
    y = np.array([r["rss_mib"] for r in rows], dtype=float)
    return float(np.polyfit(t, y, 1)[0] * 60) if len(rows) > 2 else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.soak", __doc__)
    p.add_argument("--soak-s", type=float, default=120.0, help="overload duration")
    p.add_argument("--sample-s", type=float, default=10.0, help="seconds per table row")
    p.add_argument("--capacity-s", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=8, help="closed-loop callers for capacity")
    p.add_argument("--overload", type=float, default=2.0, help="offered load / capacity")
    p.add_argument("--max-queue-size", type=int, default=64)
    p.add_argument("--max-streams", type=int, default=4)
    p.add_argument("--extra-streams", type=int, default=8, help="streams past the cap")
    p.add_argument("--recovery", type=int, default=20, help="sequential calls after the load")
    p.add_argument("--faces", type=int, default=64)
    p.add_argument("--models", type=Path, default=None)
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    args.models = (args.models or bundled_models_dir()).resolve()
    repo = ModelRepository(args.models)
    faces, source = load_faces(args.faces)
    codec, manifest = load_codec(repo.path(repo.defaults()["codec"]))
    reqs = [pb.ClassifyRequest(bitstream=b, client_id="soak") for b in codec.encode(faces)]

    with tempfile.TemporaryDirectory(prefix="fercomp-soak-") as tmp:
        proc, ports = start_server(args, Path(tmp) / "predictions.sqlite3")
        channel = grpc.insecure_channel(f"127.0.0.1:{ports['grpc_port']}")
        stub = fercomp_pb2_grpc.FerServiceStub(channel)
        stop_streams = threading.Event()
        try:
            for r in reqs[:4]:  # warm-up
                stub.Classify(r, timeout=120)
            cap = capacity(stub, reqs, args.clients, args.capacity_s)
            rate = args.overload * cap["faces_per_s"]
            streams = open_streams(
                stub, reqs, args.max_streams + args.extra_streams, stop_streams, Log()
            )
            rows = overload(stub, reqs, rate, args, proc.pid)
            stop_streams.set()
            time.sleep(2.0)
            lat = []
            for r in reqs[: args.recovery]:
                t0 = time.perf_counter()
                stub.Classify(r, timeout=30)  # raises if the server has not recovered
                lat.append(time.perf_counter() - t0)
            recovery = {"calls": len(lat), "ok": len(lat), "p50_ms": _p(lat, 50)}
        finally:
            stop_streams.set()
            channel.close()
            proc.terminate()
            proc.wait(60)

    slope = rss_slope(rows[1:])  # from the first sample under load
    print(f"faces: {source}; codec {manifest.ref}; device {args.device}")
    print(
        f"capacity: {cap['faces_per_s']:.1f} faces/s ({args.clients} closed-loop clients, "
        f"{args.capacity_s:.0f} s), latency p50 {cap['p50_ms']:.0f} ms / p99 {cap['p99_ms']:.0f} ms"
    )
    print(
        f"streams: {streams['opened']} opened at once, max_streams {args.max_streams}: "
        f"{streams['admitted']} admitted, {streams['refused']} refused RESOURCE_EXHAUSTED "
        f"(p50 {streams['refused_p50_ms']:.1f} ms, max {streams['refused_max_ms']:.1f} ms)"
    )
    print(
        f"overload: open loop at {args.overload:g} x capacity = {rate:.0f} calls/s for "
        f"{args.soak_s:.0f} s, max_queue_size {args.max_queue_size}"
    )
    print(format_table(COLUMNS, rows))
    rss = [r["rss_mib"] for r in rows]
    print(
        f"RSS: {rss[0]:.0f} MiB before the load, {min(rss[1:]):.0f}..{max(rss[1:]):.0f} MiB "
        f"under it, trend {slope:+.2f} MiB/min (least squares over the rows under load)"
    )
    print(
        f"recovery: {recovery['ok']}/{recovery['calls']} sequential calls ok after the load, "
        f"p50 {recovery['p50_ms']:.0f} ms (idle capacity run p50 {cap['p50_ms']:.0f} ms)"
    )
    write_json(
        args.json,
        {
            "benchmark": "soak", "argv": list(sys.argv[1:] if argv is None else argv),
            "codec": manifest.ref, "capacity": cap, "offered_rate": rate, "streams": streams,
            "rows": rows, "rss_slope_mib_per_min": slope, "recovery": recovery,
            "machine": machine(),
        },
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
