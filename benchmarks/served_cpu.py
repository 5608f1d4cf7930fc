"""Where the CPU of a served unary call goes: per-thread CPU time of an in-process server
under gRPC unary (or REST, ``--transport rest``) load from C client threads in the same
process, per face; ``--transport stream``: one ClassifyStream carrying every face instead.

Threads are told apart by their Python names (``fercomp-engine``: the engine's batch worker,
decode + classify; ``fercomp-grpc``: the handlers; ``fercomp-http``: uvicorn's event loop,
where REST requests are parsed, awaited and answered; ``fercomp-store``: the group-commit
writer); unnamed native threads (``native``) are mostly torch's intra-op pool. The client
threads end with their pool, so they are what remains of the process's CPU time. The last
line compares CPU used with what the cores could give in the same wall time.

    .venv/bin/python -m benchmarks.served_cpu --faces 512 --concurrency 8 \
        --data ../shared/data/fer2013.npz [--transport rest|stream]
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from benchmarks.common import (
    add_common_args,
    benchmark_parser,
    finish,
)
from benchmarks.served_throughput import (
    WARMUP,
    bench_settings,
    grpc_client,
    grpc_stream,
    rest_client,
    run_concurrently,
    served_payloads,
)
from service.app import Server

COLUMNS = [("thread", "thread"), ("cpu_s", "CPU s"), ("ms_per_face", "CPU ms/face")]
_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, tuple[str, float]]:
    """{native thread id: (name, user+system CPU seconds)} of this process's threads."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # it ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        name = names.get(int(tid), "native")
        out[int(tid)] = (
            re.sub(r"[-_]\d+(_\d+)?$", "", name),
            (int(fields[11]) + int(fields[12])) / _TICK,
        )
    return out


def batch_totals(server: Server) -> tuple[float, float]:
    """(faces, batches) the engine has run so far: ``fercomp_batch_size``'s sum and count."""
    assert server.ports is not None
    text = httpx.get(f"http://127.0.0.1:{server.ports.http}/metrics", timeout=10.0).text
    sums = re.search(r"^fercomp_batch_size_sum (\S+)$", text, re.M)
    counts = re.search(r"^fercomp_batch_size_count (\S+)$", text, re.M)
    assert sums and counts, "fercomp_batch_size missing from /metrics"
    return float(sums.group(1)), float(counts.group(1))


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.served_cpu", __doc__)
    add_common_args(p, faces=512)
    p.add_argument("--concurrency", type=int, default=8, help="client threads")
    p.add_argument("--transport", choices=("grpc", "rest", "stream"), default="grpc")
    args = p.parse_args(argv)
    models, payloads, source, manifest = served_payloads(args)
    n = len(payloads)
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(
            models, args.concurrency, db_path=Path(tmp) / "p.sqlite3", fleet_enabled=False,
            log_level="WARNING",
        )  # fmt: skip
        server = Server(settings)
        server.start()
        try:
            with grpc_client(server) as (stub, grpc_unary), rest_client(server) as rest:
                unary = grpc_unary if args.transport == "grpc" else rest
                for b in payloads[: 4 * WARMUP]:
                    unary(b)
                batches0 = batch_totals(server)
                before, c0, w0 = thread_cpu(), time.process_time(), time.perf_counter()
                if args.transport == "stream":
                    result = grpc_stream(stub, payloads)
                else:
                    result = run_concurrently(unary, payloads, args.concurrency)
                after, cpu = thread_cpu(), time.process_time() - c0
                wall = time.perf_counter() - w0
                batches1 = batch_totals(server)
                batched, batches = (b - a for a, b in zip(batches0, batches1, strict=True))
        finally:
            server.stop(grace=5.0)
    by: collections.Counter[str] = collections.Counter()
    for tid, (name, t) in after.items():
        by[name] += t - before.get(tid, (name, 0.0))[1]
    by["client threads (the rest)"] = max(0.0, cpu - sum(by.values()))
    rows = [{"thread": k, "cpu_s": v, "ms_per_face": v / n * 1e3} for k, v in by.most_common()]
    rows.append({"thread": "process total", "cpu_s": cpu, "ms_per_face": cpu / n * 1e3})
    cores = os.cpu_count() or 1
    what = {"grpc": f"gRPC unary x{args.concurrency}", "rest": f"REST x{args.concurrency}",
            "stream": "gRPC stream x1"}[args.transport]  # fmt: skip
    print(f"faces: {source}; codec {manifest.ref}; {what}; {cores} cores")
    after = (
        f"\n{result['faces_per_s']:.0f} faces/s; wall {wall:.2f} s; CPU {cpu:.2f} s = "
        f"{cpu / (wall * cores):.0%} of the {cores} cores over that time; "
        f"{batched / max(batches, 1):.1f} faces per engine batch"
    )
    return finish(
        "served_cpu", argv, COLUMNS, rows, args.json, after, face_source=source, wall_s=wall,
        transport=args.transport, faces_per_batch=batched / max(batches, 1),
        faces_per_s=result["faces_per_s"],
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
