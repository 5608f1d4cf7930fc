"""How many unary calls a second the server's transport could answer if the model cost nothing,
and what of that is grpcio's own: the floor under the unary rows of ``served_throughput``.

h2load keeps ``--concurrency`` Classify calls in flight on one connection (a closed loop, as
``--clients native`` does) against four servers in this process, one after the other:

  grpcio, empty handler        grpcio's threaded server answering every call with an empty
                               response: what grpcio's Python costs per call on this machine
  grpcio + batch worker        the same handler queues the call and waits for a worker thread
                               that collects batches (``service.batching.collect_batch``, the
                               engine's policy and default delay) and answers them: grpcio plus
                               the one hand-off any batching server has
  fercomp, instant model       the real server (interceptors, pipeline, engine, prediction
                               store with its group commit, metrics), its model's ``predict``
                               replaced by a constant answer: everything but the model
  fercomp, model               the real server as it runs

Per row: calls/s, the server process's CPU per call (h2load runs in its own process, so this is
the server's alone), and how many of the machine's cores that kept busy. A closed loop of C
callers turns around in about C / (calls/s of the instant-model row): the time between two
batches a unary caller cannot avoid on this machine; the rows above it say how much of that
is grpcio and how much the server's own path.

    .venv/bin/python -m benchmarks.transport_floor --concurrency 32 \\
        --data ../shared/data/fer2013.npz

Needs h2load (Debian: nghttp2-client).
"""

from __future__ import annotations

import queue
import resource
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc

from benchmarks import native_load
from benchmarks.common import add_common_args, benchmark_parser, finish
from benchmarks.served_ab import served
from benchmarks.served_throughput import native, served_payloads
from proto.fercomp.v1 import fercomp_pb2, fercomp_pb2_grpc
from service.batching import collect_batch
from service.model_api import FerOutput
from service.settings import Settings

COLUMNS = [("server", "server"), ("calls_per_s", "calls/s"),
           ("cpu_ms", "server CPU ms/call"), ("cores", "cores busy"),
           ("turnaround_ms", "C calls take ms")]  # fmt: skip


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measured(name: str, clients: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``run()`` (h2load's figures) with this process's CPU over it: one row."""
    c0, t0 = _cpu_seconds(), time.perf_counter()
    result = run()
    cpu, wall = _cpu_seconds() - c0, time.perf_counter() - t0
    calls = result["faces"] if "faces" in result else result["requests"]
    rate = calls / result["seconds"]
    return {"server": name, "calls_per_s": rate, "cpu_ms": cpu / calls * 1e3,
            "cores": cpu / wall, "turnaround_ms": clients / rate * 1e3}  # fmt: skip


class _Echo(fercomp_pb2_grpc.FerServiceServicer):
    """Classify answered with an empty response, at once or by a batch worker."""

    def __init__(self, batched: bool, max_batch: int, max_delay: float) -> None:
        self.response = fercomp_pb2.ClassifyResponse()
        self.batched = batched
        self.calls: queue.Queue[Future[fercomp_pb2.ClassifyResponse] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, args=(max_batch, max_delay))
        if batched:
            self._worker.start()

    def Classify(
        self, request: fercomp_pb2.ClassifyRequest, context: grpc.ServicerContext
    ) -> fercomp_pb2.ClassifyResponse:
        if not self.batched:
            return self.response
        answer: Future[fercomp_pb2.ClassifyResponse] = Future()
        self.calls.put(answer)
        return answer.result(timeout=60)

    def _work(self, max_batch: int, max_delay: float) -> None:
        last = 0
        while True:
            batch = collect_batch(
                lambda t: self.calls.get(timeout=t), max_batch, max_delay, time.monotonic,
                is_last=lambda f: f is None, expected=last + self.calls.qsize(),
            )  # fmt: skip
            last = len(batch)
            for answer in batch:
                if answer is None:
                    return
                answer.set_result(self.response)

    def stop(self) -> None:
        if self.batched:
            self.calls.put(None)
            self._worker.join()


@contextmanager
def echo_server(batched: bool, clients: int) -> Iterator[int]:
    """A bare grpcio server with ``_Echo`` on a free loopback port; yields the port."""
    defaults = Settings.model_fields
    echo = _Echo(batched, defaults["max_batch_size"].default,
                 defaults["max_queue_delay_ms"].default / 1e3)  # fmt: skip
    pool = ThreadPoolExecutor(max(16, 2 * clients))
    server = grpc.server(pool)
    fercomp_pb2_grpc.add_FerServiceServicer_to_server(echo, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None).wait()
        echo.stop()
        pool.shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.transport_floor", __doc__)
    add_common_args(p, faces=256, quality=False)
    p.add_argument("--concurrency", type=int, default=32, help="calls in flight (h2load -m)")
    p.add_argument("--seconds", type=float, default=4.0, help="per row")
    args = p.parse_args(argv)
    if shutil.which("h2load") is None:
        p.error("needs h2load: apt-get install nghttp2-client")
    c, secs = args.concurrency, args.seconds
    models, payloads, source, manifest = served_payloads(args)
    face = native_load.median_face(payloads)

    def h2load(port: int) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            result = native_load.unary_h2load(port, face, c, secs)
            if result["failed"] or not result["requests"]:
                raise RuntimeError(f"h2load: {result}")
            return result

        return run

    rows = []
    for name, batched in (("grpcio, empty handler", False), ("grpcio + batch worker", True)):
        with echo_server(batched, c) as port:
            h2load(port)()  # warm-up: connection, threads
            rows.append(measured(name, c, h2load(port)))
    with served(models, c) as server:
        assert server.state is not None and server.ports is not None
        port, api = server.ports.grpc, server.state.engine.api
        model = api.predict
        constant = FerOutput([1.0 / 7] * 7, 0.0, 0.0)

        def load() -> dict[str, Any]:
            return native(server, "grpc", port, payloads, c, secs)

        api.predict = lambda items: [constant for _ in items]  # type: ignore[method-assign]
        native(server, "grpc", port, payloads, c, 1.0)
        rows.append(measured("fercomp, instant model", c, load))
        api.predict = model  # type: ignore[method-assign]
        native(server, "grpc", port, payloads, c, 1.0)
        rows.append(measured("fercomp, model", c, load))
    print(f"faces: {source}; codec {manifest.ref}; gRPC unary x{c} from h2load, {secs:g} s a "
          f"row; 'C calls take': C / calls/s, a closed loop's turnaround")  # fmt: skip
    return finish("transport_floor", argv, COLUMNS, rows, args.json, concurrency=c)


if __name__ == "__main__":
    sys.exit(main())
