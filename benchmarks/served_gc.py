"""The garbage collector's pauses under served load, with the server's heap in its passes and
frozen out of them (service/heap.py, setting ``gc_freeze``), rounds alternated in one server.

A full (generation 2) collection walks every object the process holds, the server's half a
million included, with the interpreter lock held: no request moves until it ends. Per round
and setting, this runs unary and REST load (``--clients thread``: closed-loop client threads in
this process, per-call latency measured by them; ``native``: h2load and wrk,
benchmarks/native_load.py) while ``gc.callbacks`` times every collection, and prints faces/s,
the latency tail and the collections: how many of each generation, the longest, and the
collector's share of the wall time.

    .venv/bin/python -m benchmarks.served_gc --clients native --rounds 4 \\
        --data ../shared/data/fer2013.npz
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from benchmarks import native_load
from benchmarks.common import add_common_args, benchmark_parser, finish
from benchmarks.served_ab import served
from benchmarks.served_throughput import (
    grpc_client,
    native_loads,
    rest_client,
    run_concurrently,
    served_payloads,
)
from service import heap

SETTINGS = ("in the collector's passes", "frozen (the server's choice)")
COLUMNS = [("path", "path"), ("setting", "heap"), ("faces_per_s", "faces/s"),
           ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
           ("gen2", "full collections"), ("gen2_max_ms", "longest full ms"),
           ("gc_share", "collector share of wall")]  # fmt: skip


@contextmanager
def collections() -> Iterator[list[tuple[int, float]]]:
    """(generation, seconds) of every collection while inside."""
    out: list[tuple[int, float]] = []
    started: list[float] = []

    def timing(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            out.append((int(info["generation"]), time.perf_counter() - started[0]))

    gc.callbacks.append(timing)
    try:
        yield out
    finally:
        gc.callbacks.remove(timing)


def measured(load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``load()``'s faces/s and latency, and the collections it ran into."""
    t0 = time.perf_counter()
    with collections() as seen:
        result = load()
    wall = time.perf_counter() - t0
    full = [s for g, s in seen if g == 2]
    return {
        "faces_per_s": result["faces_per_s"],
        "p50_ms": result.get("p50_ms"),
        "p99_ms": result.get("p99_ms"),
        "max_ms": result.get("max_ms"),
        "gen2": len(full),
        "gen2_max_ms": max(full, default=0.0) * 1e3,
        "gc_share": sum(s for _, s in seen) / wall,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.served_gc", __doc__)
    add_common_args(p, faces=1024, quality=False)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--concurrency", type=int, default=8, help="clients (unary, REST)")
    p.add_argument("--clients", choices=("thread", "native"), default="thread")
    p.add_argument("--seconds", type=float, default=10.0, help="--clients native: per load")
    args = p.parse_args(argv)
    native_load.check_clients(p, args)
    models, payloads, source, manifest = served_payloads(args)
    c = args.concurrency
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with (
        served(models, c) as server,
        grpc_client(server) as (_, unary),
        rest_client(server) as rest,
    ):
        loads: dict[str, Callable[[], dict[str, Any]]] = {
            f"gRPC unary x{c}": lambda: run_concurrently(unary, payloads, c),
            f"REST x{c}": lambda: run_concurrently(rest, payloads, c),
        }
        if args.clients == "native":
            loads = native_loads(server, payloads, c, args.seconds)
        for r in range(args.rounds):
            for setting in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
                if setting == SETTINGS[1]:
                    heap.freeze()
                else:
                    heap.thaw()
                for path, load in loads.items():
                    results.setdefault((path, setting), []).append(measured(load))
    rows = []
    for (path, setting), runs in results.items():
        row: dict[str, Any] = {"path": path, "setting": setting}
        for key in ("faces_per_s", "p50_ms", "p99_ms", "gc_share"):
            values = [x[key] for x in runs if x[key] is not None]
            row[key] = statistics.median(values) if values else None
        for key in ("max_ms", "gen2_max_ms"):  # the worst of the rounds: rare by nature
            values = [x[key] for x in runs if x[key] is not None]
            row[key] = max(values) if values else None
        row["gen2"] = sum(x["gen2"] for x in runs)
        rows.append(row)
    rows.sort(key=lambda row: (row["path"], row["setting"]))
    print(f"faces: {source}; codec {manifest.ref}; {args.rounds} rounds, order alternated; "
          f"clients: {args.clients}; medians of the rounds but max ms and longest full "
          f"collection (the worst round), full collections summed")  # fmt: skip
    return finish("served_gc", argv, COLUMNS, rows, args.json, clients=args.clients)


if __name__ == "__main__":
    sys.exit(main())
