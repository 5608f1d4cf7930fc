"""Batch by batch: how a closed loop of unary callers meets the engine's batching.

One server; for each ``--max-queue-delay-ms`` in turn (set on the running engine), unary load
runs for ``--seconds`` while every batch the engine runs is recorded: its size, when its first
and last requests were queued, when it started and ended. Printed per delay: faces/s, the mean
batch and the most frequent sizes, when the callers answered by one batch were back (first and
last request of the next batch, from the end of the previous one; negative: queued while it
ran), the batch's compute, and the share of the time the worker sat idle between batches.

    .venv/bin/python -m benchmarks.served_cycles --clients native --concurrency 32 \\
        --max-queue-delay-ms 5 12 --data ../shared/data/fer2013.npz

``--clients native`` drives the calls with h2load (benchmarks/native_load.py); ``thread``
with client threads in this process, whose own Python lengthens the way back.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import native_load
from benchmarks.common import add_common_args, benchmark_parser, finish
from benchmarks.served_ab import closed_loop, served
from benchmarks.served_throughput import grpc_client, native, served_payloads
from service.app import Server

COLUMNS = [("delay_ms", "max_queue_delay_ms"), ("faces_per_s", "faces/s"),
           ("mean_batch", "mean batch"), ("sizes", "most frequent sizes (batches)"),
           ("first_back_ms", "first back ms"), ("last_back_ms", "last back ms"),
           ("compute_ms", "compute ms"), ("idle", "worker idle")]  # fmt: skip


@dataclass(frozen=True)
class Batch:
    first_queued: float
    last_queued: float
    start: float
    end: float
    size: int


def record_batches(server: Server) -> list[Batch]:
    """Wrap the running engine's batch processing; the list fills as batches run."""
    assert server.state is not None
    engine, batches = server.state.engine, []
    process = engine._process

    def recorded(jobs: list[Any]) -> None:
        start = time.monotonic()
        process(jobs)
        queued = [j.enqueued for j in jobs]
        batches.append(Batch(min(queued), max(queued), start, time.monotonic(), len(jobs)))

    engine._process = recorded  # type: ignore[method-assign]
    return batches


def summarize(batches: Sequence[Batch]) -> dict[str, Any]:
    """The cycle figures of consecutive batches (the first ones, warming up, are skipped)."""
    run = list(batches[len(batches) // 10 :])
    pairs = list(itertools.pairwise(run))
    if not pairs:
        raise RuntimeError("fewer than two batches ran: measure longer")
    ms = [(b.first_queued - a.end, b.last_queued - a.end, b.start - a.end) for a, b in pairs]
    total = run[-1].end - run[0].start
    top = Counter(b.size for b in run).most_common(3)
    return {
        "mean_batch": statistics.mean(b.size for b in run),
        "sizes": ", ".join(f"{size} ({n})" for size, n in top),
        "first_back_ms": statistics.median(m[0] for m in ms) * 1e3,
        "last_back_ms": statistics.median(m[1] for m in ms) * 1e3,
        "compute_ms": statistics.median(b.end - b.start for b in run) * 1e3,
        "idle": sum(max(m[2], 0.0) for m in ms) / total,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.served_cycles", __doc__)
    add_common_args(p, faces=256, quality=False)
    p.add_argument("--concurrency", type=int, default=8, help="unary callers")
    p.add_argument("--clients", choices=("thread", "native"), default="thread")
    p.add_argument("--seconds", type=float, default=8.0, help="per delay")
    p.add_argument("--max-queue-delay-ms", type=float, nargs="+", default=[5.0])
    args = p.parse_args(argv)
    native_load.check_clients(p, args)
    models, payloads, source, manifest = served_payloads(args)
    c, rows = args.concurrency, []
    with served(models, c) as server, grpc_client(server) as (_, unary):
        assert server.state is not None and server.ports is not None
        port = server.ports.grpc
        load: Callable[[], float] = lambda: closed_loop(unary, payloads, c, args.seconds)  # noqa: E731
        if args.clients == "native":
            load = lambda: native(server, "grpc", port, payloads, c, args.seconds)["faces_per_s"]  # noqa: E731
        for body in payloads[:16]:
            unary(body)
        batches = record_batches(server)
        for delay in args.max_queue_delay_ms:
            server.state.engine.max_queue_delay = delay / 1e3
            batches.clear()
            faces_per_s = load()
            rows.append({"delay_ms": delay, "faces_per_s": faces_per_s, **summarize(batches)})
    print(f"faces: {source}; codec {manifest.ref}; gRPC unary x{c}, clients: {args.clients}; "
          f"{args.seconds:g} s per delay; medians over the batches")  # fmt: skip
    return finish("served_cycles", argv, COLUMNS, rows, args.json, clients=args.clients)


if __name__ == "__main__":
    sys.exit(main())
