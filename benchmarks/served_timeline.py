"""Where a unary call's time goes: the phases of every call of a closed loop, from the client's
send to its answer, through the real server in this process.

Each phase is timed by wrapping the server's own functions (the servicer's ``Classify``, the
engine's ``submit``, the model's ``predict``, the store's ``add`` and its commit), so the table
splits a call into: client to handler (gRPC in both processes' halves), parse + submit,
queue (waiting for the batch to start), predict (the whole batch: entropy, synthesis,
classifier), predict to store (responses built, futures resolved), store commit (the group
commit, fsync included), commit to handler return, handler to client. Medians and means over
every call; also the gap between one batch's end and the next one's start (the engine idle),
the faces per batch and the rows per commit.

    .venv/bin/python -m benchmarks.served_timeline --concurrency 8 --seconds 6 \\
        --data ../shared/data/fer2013.npz
"""

from __future__ import annotations

import itertools
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import service.grpc_server as grpc_server
from benchmarks.common import add_common_args, benchmark_parser, finish
from benchmarks.served_ab import closed_loop, served
from benchmarks.served_throughput import grpc_client, served_payloads
from proto.fercomp.v1 import fercomp_pb2

# (from, to, name): the marks each call collects, in order.
PHASES = [
    ("sent", "handler", "client -> handler"),
    ("handler", "queued", "handler: parse + submit"),
    ("queued", "batch", "queue (until its batch starts)"),
    ("batch", "predicted", "predict (the whole batch)"),
    ("predicted", "to_store", "predict -> store (responses, futures)"),
    ("to_store", "committed", "store commit"),
    ("committed", "returned", "commit -> handler returns"),
    ("returned", "answered", "handler -> client"),
    ("sent", "answered", "total"),
]
COLUMNS = [("phase", "phase"), ("p50", "p50 ms"), ("mean", "mean ms")]


class Marks:
    """perf_counter marks per request id, from any thread."""

    def __init__(self) -> None:
        self.by_id: dict[str, dict[str, float]] = defaultdict(dict)
        self.batch_sizes: dict[str, int] = {}
        self.commits: list[int] = []

    def mark(self, rid: str, name: str, t: float | None = None) -> None:
        self.by_id[rid][name] = time.perf_counter() if t is None else t


def instrument(server: Any, marks: Marks) -> None:
    """Wrap the running server's functions so each call collects its marks."""
    state = server.state
    api, engine, store = state.api, state.pipeline.engine, state.pipeline.store
    predict, submit, add = api.predict, engine.submit, store.add
    writer = store._writer
    write = writer._write

    def timed_predict(items: list[Any]) -> Any:
        t = time.perf_counter()
        for it in items:
            marks.mark(it.input.meta.request_id, "batch", t)
            marks.batch_sizes[it.input.meta.request_id] = len(items)
        out = predict(items)
        t = time.perf_counter()
        for it in items:
            marks.mark(it.input.meta.request_id, "predicted", t)
        return out

    def timed_submit(request: Any, deadline: float | None = None) -> Any:
        future = submit(request, deadline)
        marks.mark(request.meta.request_id, "queued")
        return future

    def timed_add(pred: Any, done: Any = None) -> Any:
        marks.mark(pred.request_id, "to_store")
        future = add(pred, done)
        future.add_done_callback(lambda _: marks.mark(pred.request_id, "committed"))
        return future

    def counted_write(group: Any) -> None:
        marks.commits.append(len(group.inserts))
        write(group)

    api.predict, engine.submit, store.add = timed_predict, timed_submit, timed_add
    writer._write = counted_write


@contextmanager
def wrapped_servicer(marks: Marks) -> Iterator[None]:
    """The servicer is built at server start: wrap its class before, restore it after."""
    classify = grpc_server.FerServicer.Classify

    def timed(self: Any, request: Any, context: Any) -> Any:
        marks.mark(request.request_id, "handler")
        try:
            return classify(self, request, context)
        finally:
            marks.mark(request.request_id, "returned")

    grpc_server.FerServicer.Classify = timed  # type: ignore[method-assign]
    try:
        yield
    finally:
        grpc_server.FerServicer.Classify = classify  # type: ignore[method-assign]


def marked_call(stub: Any, marks: Marks) -> Callable[[bytes], None]:
    """A one-face unary call that sends its own request id and marks when it was sent and
    answered (for ``served_ab.closed_loop``)."""
    ids = itertools.count(1)
    lock = threading.Lock()

    def call(payload: bytes) -> None:
        with lock:
            rid = f"t{next(ids)}"
        sent = time.perf_counter()
        stub.Classify(fercomp_pb2.ClassifyRequest(bitstream=payload, request_id=rid), timeout=60)
        marks.mark(rid, "sent", sent)
        marks.mark(rid, "answered")

    return call


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.served_timeline", __doc__)
    add_common_args(p, faces=256, quality=False)
    p.add_argument("--concurrency", type=int, default=8, help="unary client threads")
    p.add_argument("--seconds", type=float, default=6.0, help="length of the closed loop")
    p.add_argument("--max-queue-delay-ms", type=float, default=None,
                   help="the engine's wait for a batch (default: the server's)")  # fmt: skip
    args = p.parse_args(argv)
    models, payloads, source, manifest = served_payloads(args)
    marks = Marks()
    with (
        wrapped_servicer(marks),
        served(models, args.concurrency) as server,
        grpc_client(server) as (stub, unary),
    ):
        for body in payloads[:16]:  # connection, lazy init: before the marks
            unary(body)
        if args.max_queue_delay_ms is not None:
            server.state.engine.max_queue_delay = args.max_queue_delay_ms / 1e3
        instrument(server, marks)
        rate = closed_loop(marked_call(stub, marks), payloads, args.concurrency, args.seconds)
    names = {a for a, _, _ in PHASES} | {b for _, b, _ in PHASES}
    calls = [m for rid, m in marks.by_id.items() if rid.startswith("t") and names <= set(m)]
    if not calls:
        raise SystemExit("no call collected every mark")
    rows = []
    for a, b, name in PHASES:
        ms = [1e3 * (m[b] - m[a]) for m in calls]
        rows.append({"phase": name, "p50": statistics.median(ms), "mean": statistics.mean(ms)})
    starts = sorted({m["batch"] for m in calls})
    ends = sorted({m["predicted"] for m in calls})
    gaps = [1e3 * (s - e) for s, e in zip(starts[1:], ends[:-1], strict=False) if s > e]
    per_batch = statistics.mean(marks.batch_sizes[rid] for rid in marks.by_id if rid in
                                marks.batch_sizes and rid.startswith("t"))  # fmt: skip
    commits = Counter(marks.commits).most_common(4)
    after = (
        f"{rate:.0f} faces/s, {len(calls)} calls; {per_batch:.2f} faces per batch; engine idle "
        f"between batches: p50 {statistics.median(gaps):.2f} ms; rows per commit (count): "
        + ", ".join(f"{rows_} ({n})" for rows_, n in commits)
    )
    print(f"faces: {source}; codec {manifest.ref}; gRPC unary x{args.concurrency}, "
          f"{args.seconds:g} s closed loop")  # fmt: skip
    return finish("served_timeline", argv, COLUMNS, rows, args.json, after=after,
                  faces_per_s=rate, faces_per_batch=per_batch)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
