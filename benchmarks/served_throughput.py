"""Served throughput vs the in-process limit, and what JPEG would cost instead.

Starts an in-process ``Server`` on free loopback ports, pre-encodes the faces with the
repository's default codec (client side, not timed), then measures, one after the other:

  in-process   decode + classify on the server's own model objects, max_batch_size at a time:
               the ceiling the transports are measured against (no queue, no store, no network);
               with --concurrency below max_batch_size, also concurrency faces at a time (the
               largest batch that many closed-loop callers can make: their ceiling)
  gRPC unary   C client threads on one channel, one Classify call in flight each
  gRPC stream  one ClassifyStream with every face (server keeps <= 2 x max_batch_size in flight);
               with --clients native, h2load sends such calls one after the other
  REST         C client threads posting raw bitstreams to POST /v1/classify (httpx)
  JPEG         baseline with no endpoint: Pillow decode of JPEG q30 files + the same classifier,
               in-process, max_batch_size at a time; compare it with "in-process", not the
               transports (a JPEG endpoint would add its transport cost on top)

    .venv/bin/python -m benchmarks.served_throughput --faces 256 --concurrency 8 --json out.json

Client and server share this machine's cores, so on a small CPU the transport rows also pay
for the client; with ``--clients process`` the unary and REST clients at least run in an
interpreter of their own (a child process), as a real client would, and with ``--clients
native`` they are C load generators (h2load, wrk: benchmarks/native_load.py), which cost the
server's cores little and turn a call around in microseconds. Every served request is also
written to the prediction store, as in production.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from threading import Lock
from typing import Any

import grpc
import httpx
import numpy as np
import torch

from benchmarks import load_client, native_load
from benchmarks.common import (
    add_common_args,
    benchmark_parser,
    format_table,
    load_faces,
    machine,
    mean_size,
    pil_decode,
    pil_encode,
    run_batches,
    throughput,
    write_json,
)
from core.artifacts import ModelRepository, bundled_models_dir, load_codec
from core.preprocess import tensor_to_uint8
from proto.fercomp.v1 import fercomp_pb2, fercomp_pb2_grpc
from service.app import Server
from service.registry import LoadedClassifier
from service.settings import Settings

COLUMNS = [
    ("path", "path"),
    ("faces_per_s", "faces/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("latency_of", "latency of"),
    ("mean_batch", "engine's mean batch"),
    ("bytes_per_face", "bytes/face"),
]
WARMUP = 4  # untimed items per row: connection setup, lazy init
CLIENTS = {  # --clients -> how the summary line names them
    "thread": "threads of this process",
    "process": "a child process",
    "native": "h2load (gRPC unary, one face; stream, every face) and wrk (REST), checked "
    "against the server's counts",
}


def run_concurrently(call: Callable[[Any], object], items: Sequence[Any], threads: int) -> dict:
    """``call(item)`` for every item from ``threads`` threads; faces/s and per-call latency."""
    latencies = [0.0] * len(items)
    next_index = iter(range(len(items)))
    lock = Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            t0 = time.perf_counter()
            call(items[i])
            latencies[i] = time.perf_counter() - t0

    for item in items[:WARMUP]:
        call(item)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(worker) for _ in range(threads)]:
            f.result()  # re-raises a failed call
    return throughput(len(items), time.perf_counter() - t0, latencies)


def in_process(server: Server, payloads: list[bytes], batch: int) -> dict:
    """What the engine's worker does per batch, minus queueing, responses and the store."""
    assert server.state is not None
    api = server.state.api  # its decoder (inline or the isolated process) and its flip TTA
    codec, clf = server.state.registry.active_codec, server.state.registry.active_classifier

    def decode_classify(chunk: list[bytes]) -> None:
        # All faces here are 48x48: one (codec, size) group per batch, as in FerModelAPI.
        containers = [codec.codec.parse(p) for p in chunk]
        h = containers[0].header
        x_hat = api.decode_images(codec, containers, h.height, h.width)
        api.classify_images(clf, x_hat).cpu()  # .cpu() waits for a GPU

    return run_batches(decode_classify, payloads, batch)


def jpeg_in_process(server: Server, clf: LoadedClassifier, files: list[bytes], batch: int) -> dict:
    """Pillow decode + the classifier exactly as served (its precision, flip TTA when on)."""
    assert server.state is not None
    api = server.state.api

    def decode_classify(chunk: list[bytes]) -> None:
        pixels = np.stack([pil_decode(f) for f in chunk])
        x = torch.from_numpy(pixels).float().div_(255.0).unsqueeze(1)
        api.classify_images(clf, x.to(clf.device)).cpu()

    return run_batches(decode_classify, files, batch)


def grpc_stream(stub: Any, payloads: list[bytes]) -> dict:
    """Latency here runs from gRPC pulling the item off the request iterator to its answer."""
    warmup = [fercomp_pb2.ClassifyRequest(bitstream=p) for p in payloads[:WARMUP]]
    for _ in stub.ClassifyStream(iter(warmup), timeout=60):
        pass
    sent = [0.0] * len(payloads)
    latencies = []

    def requests() -> Any:
        for i, p in enumerate(payloads):
            sent[i] = time.perf_counter()
            yield fercomp_pb2.ClassifyRequest(bitstream=p)

    t0 = time.perf_counter()
    for r in stub.ClassifyStream(requests(), timeout=600):
        if r.HasField("error"):
            raise RuntimeError(f"stream item {r.index}: {r.error.code} {r.error.message}")
        latencies.append(time.perf_counter() - sent[r.index])
    return throughput(len(payloads), time.perf_counter() - t0, latencies)


def measure(server: Server, payloads: list[bytes], jpegs: list[bytes], args: Any) -> list[dict]:
    """The rows, in the order of the module docstring."""
    assert server.state is not None and server.ports is not None
    batch, c, q = args.max_batch_size, args.concurrency, args.quality
    learned, jpeg = mean_size(payloads), mean_size(jpegs)

    def row(path: str, latency_of: str, size: float, result: dict) -> dict:
        return {"path": path, "latency_of": latency_of, "bytes_per_face": size} | result

    clf, per_batch = server.state.registry.active_classifier, f"batch of {batch}"
    # Raw stubs, not FerClient.classify_many: its 64-face chunks would idle the threads at
    # every chunk boundary, which is the SDK's cost, not the server's.
    ports = server.ports

    def load(transport: str, call: Callable[[bytes], None]) -> dict:
        port = ports.grpc if transport == "grpc" else ports.http
        if args.clients == "process":  # the same threads, in an interpreter of their own
            return dict(load_client.run_in_child(transport, port, payloads, c))
        if args.clients == "native":
            return native(server, transport, port, payloads, c, args.native_seconds)
        return run_concurrently(call, payloads, c)

    def batched(run: Callable[[], dict]) -> dict:
        """``run()``'s figures and the mean batch the engine ran them in."""
        count, total = engine_batches(server)
        result = run()
        count2, total2 = engine_batches(server)
        return result | {"mean_batch": (total2 - total) / max(count2 - count, 1.0)}

    def stream() -> dict:
        if args.clients == "native":  # h2load: no client Python under the server's lock
            return native(server, "stream", ports.grpc, payloads, 1, args.native_seconds)
        return grpc_stream(stub, payloads)

    # Closed loops of c < batch callers never make batches larger than c: the engine's own
    # cost at that batch is their ceiling, with no transport at all.
    at_c = [] if c >= batch else [row(f"in-process, batches of {c}", f"batch of {c}", learned,
                                      in_process(server, payloads, c))]  # fmt: skip
    with grpc_client(server) as (stub, unary), rest_client(server) as rest:
        return [
            row("in-process", per_batch, learned, in_process(server, payloads, batch)),
            *at_c,
            row(f"gRPC unary x{c}", "call", learned, batched(lambda: load("grpc", unary))),
            row("gRPC stream x1", "item", learned, batched(stream)),
            row(f"REST x{c}", "request", learned, batched(lambda: load("rest", rest))),
            row(
                f"JPEG q{q} in-process", per_batch, jpeg, jpeg_in_process(server, clf, jpegs, batch)
            ),
        ]


def metric_samples(server: Server, *names: str) -> list[Any]:
    """The samples of the server's own metrics registry named ``names``."""
    assert server.state is not None
    return [
        sample
        for metric in server.state.metrics.registry.collect()
        for sample in metric.samples
        if sample.name in names
    ]


def engine_batches(server: Server) -> tuple[float, float]:
    """The server's ``fercomp_batch_size`` so far: (batches, faces)."""
    count, total = "fercomp_batch_size_count", "fercomp_batch_size_sum"
    samples = {s.name: s.value for s in metric_samples(server, count, total)}
    return samples[count], samples[total]


def request_counts(server: Server, transport: str) -> dict[str, float]:
    """The server's ``fercomp_requests_total`` for ``transport``: status -> count."""
    return {
        s.labels["status"]: s.value
        for s in metric_samples(server, "fercomp_requests_total")
        if s.labels["transport"] == transport
    }


def native(
    server: Server, transport: str, port: int, payloads: list[bytes], clients: int, secs: float
) -> dict:
    """``--clients native``: h2load (unary, the median-sized face; stream, every face) or wrk
    (REST, every face), checked against the server's own request counts."""
    if transport == "stream":
        return native_load.checked(
            lambda: native_load.stream_h2load(port, payloads, secs),
            lambda: request_counts(server, "grpc_stream"),
            "h2load",
        )
    if transport == "grpc":
        face = native_load.median_face(payloads)
        return native_load.checked(
            lambda: native_load.unary_h2load(port, face, clients, secs),
            lambda: request_counts(server, "grpc"),
            "h2load",
        )
    return native_load.checked(
        lambda: native_load.rest_wrk(port, payloads, clients, secs),
        lambda: request_counts(server, "http"),
        "wrk",
    )


def native_loads(
    server: Server, payloads: list[bytes], clients: int, secs: float
) -> dict[str, Callable[[], dict]]:
    """``--clients native``'s unary, stream and REST loads (``native``), by the rows' names."""
    ports = server.ports
    assert ports is not None
    return {
        "gRPC stream x1": lambda: native(server, "stream", ports.grpc, payloads, 1, secs),
        f"gRPC unary x{clients}": lambda: native(
            server, "grpc", ports.grpc, payloads, clients, secs
        ),
        f"REST x{clients}": lambda: native(server, "rest", ports.http, payloads, clients, secs),
    }


def served_payloads(args: argparse.Namespace) -> tuple[Path, list[bytes], str, Any]:
    """The model repository of ``--models`` (default: bundled), the edge bitstreams of
    ``--faces`` faces from ``--data`` with its default codec, where the faces came from, and
    that codec's manifest: what every served benchmark starts from."""
    models = (args.models or bundled_models_dir()).resolve()
    faces, source = load_faces(args.faces, args.data)
    payloads, manifest = default_payloads(models, faces)
    return models, payloads, source, manifest


def default_payloads(models: Path, faces: Any) -> tuple[list[bytes], Any]:
    """The bitstreams an edge device sends for ``faces`` with the repository's default codec
    (client side, untimed), and that codec's manifest."""
    repo = ModelRepository(models)
    codec, manifest = load_codec(repo.path(repo.defaults()["codec"]))
    return [b for i in range(0, len(faces), 64) for b in codec.encode(faces[i : i + 64])], manifest


@contextmanager
def grpc_client(server: Server) -> Iterator[tuple[Any, Callable[[bytes], None]]]:
    """A raw stub on a channel to ``server`` and a one-face unary call through it."""
    assert server.ports is not None
    with grpc_client_at(server.ports.grpc) as client:
        yield client


@contextmanager
def grpc_client_at(port: int) -> Iterator[tuple[Any, Callable[[bytes], None]]]:
    """``grpc_client`` for the server at ``port`` (benchmarks/load_client.py)."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = fercomp_pb2_grpc.FerServiceStub(channel)

    def unary(p: bytes) -> None:
        stub.Classify(fercomp_pb2.ClassifyRequest(bitstream=p), timeout=60)

    try:
        yield stub, unary
    finally:
        channel.close()


@contextmanager
def rest_client(server: Server) -> Iterator[Callable[[bytes], None]]:
    """A one-face ``POST /v1/classify`` to ``server`` over one keep-alive ``httpx.Client``."""
    assert server.ports is not None
    with rest_at(server.ports.http) as rest:
        yield rest


@contextmanager
def rest_at(port: int) -> Iterator[Callable[[bytes], None]]:
    """``rest_client`` for the server at ``port`` (benchmarks/load_client.py)."""
    octets = {"content-type": "application/octet-stream"}
    # Every client thread keeps its connection: httpx keeps 20 alive by default, so 32 threads
    # closed and reopened a connection on most requests (and once hit a closed socket).
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0, limits=limits) as http:

        def rest(p: bytes) -> None:
            http.post("/v1/classify", content=p, headers=octets).raise_for_status()

        yield rest


def bench_settings(models: Path, concurrency: int, **overrides: Any) -> Settings:
    """A loopback server on free ports over ``models`` whose transport is never the
    bottleneck: threads for ``concurrency`` unary clients on top of the ones reserved for
    streams (grpc_workers must exceed max_streams); only the default codec is loaded (the only
    one whose streams the benchmarks send)."""
    workers = Settings.model_fields["max_streams"].default + max(16, 2 * concurrency)
    return Settings(
        host="127.0.0.1", grpc_port=0, http_port=0, models_dir=models, grpc_workers=workers,
        grpc_max_concurrent_rpcs=2 * workers, preload_codecs="default", **overrides,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.served_throughput", __doc__)
    add_common_args(p, faces=256)
    p.add_argument("--concurrency", type=int, default=8, help="client threads (unary, REST)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument(
        "--clients",
        choices=("thread", "process", "native"),
        default="thread",
        help="unary and REST client threads in this process (sharing the server's interpreter "
        "lock), in a child process (benchmarks/load_client.py), or native load generators, "
        "h2load and wrk (benchmarks/native_load.py; the stream from h2load too; with "
        "'process' it stays in this process)",
    )
    p.add_argument(
        "--native-seconds",
        type=float,
        default=10.0,
        help="--clients native: how long each of h2load and wrk runs",
    )
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    p.add_argument(
        "--decode-isolation",
        choices=("process", "inline"),
        default="process",
        help="entropy decoding in a supervised child (the default) or in the server process",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="the server's inference_precision (synthesis + classifier; default auto)",
    )
    p.add_argument(
        "--tta-flip",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="classify each face and its mirror (the server default)",
    )
    args = p.parse_args(argv)
    if min(args.faces, args.concurrency, args.max_batch_size) < 1:
        p.error("--faces, --concurrency and --max-batch-size must be >= 1")
    native_load.check_clients(p, args)
    if args.threads:
        torch.set_num_threads(args.threads)  # the server runs in this process: it applies there
    models = (args.models or bundled_models_dir()).resolve()
    faces, source = load_faces(args.faces, args.data)
    # Client side, untimed: the edge device's learned bitstreams and the JPEG alternative.
    payloads, codec_manifest = default_payloads(models, faces)
    jpegs = [pil_encode(tensor_to_uint8(f), "JPEG", args.quality) for f in faces]

    with tempfile.TemporaryDirectory(prefix="fercomp-bench-") as tmp:
        server = Server(
            bench_settings(
                models,
                args.concurrency,
                device=args.device,
                db_path=Path(tmp) / "predictions.sqlite3",
                max_batch_size=args.max_batch_size,
                decode_isolation=args.decode_isolation,
                tta_flip=args.tta_flip,
                inference_precision=args.precision,
            )
        )
        server.start()
        try:
            assert server.state is not None
            device = str(server.state.registry.active_classifier.device)
            precision = server.state.api.precision
            rows = measure(server, payloads, jpegs, args)
        finally:
            server.stop(grace=5.0)

    print(
        f"faces: {source}; codec {codec_manifest.ref}; device {device}; "
        f"max_batch_size {args.max_batch_size}; torch threads {torch.get_num_threads()}; "
        f"decode isolation {args.decode_isolation}; flip TTA {args.tta_flip}; "
        f"precision {precision}; clients: "
        f"{CLIENTS[args.clients]}"
    )
    print(format_table(COLUMNS, rows))
    print(
        "\nin-process: decode + classify on the server's model objects, no transport/queue/store."
        "\ngRPC/REST: end-to-end through the running server (queue, dynamic batching, store), "
        "client threads on the same machine.\nJPEG: no such endpoint; Pillow decode + the same "
        "classifier as served (precision, flip TTA) in-process; accuracy is not measured here."
    )
    write_json(
        args.json,
        {
            "benchmark": "served_throughput",
            "argv": list(sys.argv[1:] if argv is None else argv),
            "face_source": source,
            "codec": codec_manifest.ref,
            "device": device,
            "max_batch_size": args.max_batch_size,
            "concurrency": args.concurrency,
            "clients": args.clients,
            "native_seconds": args.native_seconds if args.clients == "native" else None,
            "decode_isolation": args.decode_isolation,
            "tta_flip": args.tta_flip,
            "machine": machine(),
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
