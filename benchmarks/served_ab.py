"""One server, one knob, two settings, rounds alternated: what a change of the served path is
worth on a machine whose runs move by ±20 % from one to the next.

Separate runs of ``served_throughput`` before and after a change compare two moments of a busy
machine; here both settings share the process, the models and the warm caches, and each round
measures them back to back (in alternating order), so drift hits both alike. Per round and
setting: in-process batches of 32, one gRPC stream with every face, then gRPC unary and REST,
each C client threads for ``--seconds``. The table gives the median and range of the rounds.

Knobs (``A`` → ``B``):

  blas            numpy's BLAS at 2 threads → 1 (core/blas.py; the server's choice is 1)
  torch-threads   torch intra-op threads 1 → 2 (torch's default here is the core count)
  batching        the batch worker waits max_queue_delay_ms for up to max_batch_size ("fixed",
                  what it did before) → stops once it holds the previous batch plus what was
                  queued ("adaptive", service/batching.py; the server's choice)
  queue-delay     max_queue_delay_ms 5 → 12: how long the batch worker waits for the callers
                  it expects back (the previous batch's) before it starts without them
  max-batch       max_batch_size 32 → 16
  gc-freeze       the server's heap in the garbage collector's passes → frozen out of them
                  (service/heap.py; the server's choice)
  openmp          libgomp's default wait (its spin throttled to 1,000 turns once it manages
                  more threads than there are CPUs) → OMP_WAIT_POLICY=ACTIVE with
                  GOMP_SPINCOUNT=300000 (core/openmp.py; the server's choice). libgomp reads
                  them once, at load: each round runs each setting in a fresh child process
                  (its own server), so this knob also pays a server start per measurement

    .venv/bin/python -m benchmarks.served_ab --knob blas --rounds 4 \
        --data ../shared/data/fer2013.npz
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

import service.engine as engine_module
from benchmarks import native_load
from benchmarks.common import (
    add_common_args,
    benchmark_parser,
    finish,
    openmp_child_env,
    run_child,
    write_json,
)
from benchmarks.served_throughput import (
    bench_settings,
    grpc_client,
    grpc_stream,
    in_process,
    native_loads,
    rest_client,
    served_payloads,
)
from service import heap
from service.app import Server
from service.batching import collect_batch

KNOBS: dict[str, tuple[str, str]] = {
    "blas": ("2 threads", "1 thread"),
    "torch-threads": ("1 thread", "2 threads"),
    "batching": ("fixed", "adaptive"),
    "openmp": ("libgomp default", "active, 300000"),
    "queue-delay": ("5 ms", "12 ms"),
    "max-batch": ("32", "16"),
    "gc-freeze": ("off", "on"),
}
# Knobs set on the measured server (its engine, its heap): apply() needs it.
SERVER_KNOBS = frozenset({"queue-delay", "max-batch", "gc-freeze"})
# Knobs read at process start, measured in a child process per setting: knob -> the child's
# environment for a setting.
PROCESS_KNOBS: dict[str, Callable[[str], dict[str, str]]] = {"openmp": openmp_child_env}
COLUMNS = [("path", "path"), ("setting", "setting"), ("median", "median faces/s"),
           ("low", "lowest"), ("high", "highest"), ("ratio", "B / A (medians)")]  # fmt: skip


def _fixed_wait(*args: Any, **kwargs: Any) -> list[Any]:
    kwargs.pop("expected", None)  # the policy before: wait out the delay, up to max size
    return collect_batch(*args, **kwargs)


def apply(knob: str, setting: str, server: Server | None = None) -> None:
    """Put the running process (and ``server``, for the knobs of ``SERVER_KNOBS``) in
    ``setting``."""
    if knob in SERVER_KNOBS:
        assert server is not None and server.state is not None
        engine = server.state.engine
        if knob == "queue-delay":
            engine.max_queue_delay = float(setting.split()[0]) / 1e3
        elif knob == "max-batch":
            engine.max_batch_size = int(setting)
        elif setting == "on":  # gc-freeze: what Server.start does, and what its stop undoes
            heap.freeze()
        else:
            heap.thaw()
    elif knob == "blas":
        threadpool_limits(limits=int(setting[0]), user_api="blas")
    elif knob == "torch-threads":
        torch.set_num_threads(int(setting[0]))
    else:  # the engine module looks collect_batch up at each batch
        engine_module.collect_batch = _fixed_wait if setting == "fixed" else collect_batch  # type: ignore[assignment]


def closed_loop(
    call: Callable[[bytes], None], payloads: list[bytes], threads: int, secs: float
) -> float:
    """``threads`` callers each sending the next face when the last is answered; faces/s."""
    end, done = time.monotonic() + secs, [0] * threads

    def caller(i: int) -> None:
        k = i
        while time.monotonic() < end:
            call(payloads[k % len(payloads)])
            k, done[i] = k + threads, done[i] + 1

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(caller, range(threads)))
    return sum(done) / (time.perf_counter() - t0)


@contextmanager
def served(models: Path, concurrency: int) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="fercomp-ab-") as tmp:
        server = Server(bench_settings(models, concurrency, db_path=Path(tmp) / "p.sqlite3",
                                       fleet_enabled=False, log_level="WARNING"))  # fmt: skip
        server.start()
        try:
            yield server
        finally:
            server.stop(grace=5.0)


def measure_rounds(
    args: argparse.Namespace,
    settings: Sequence[str],
    on_setting: Callable[[str, Server], None],
) -> tuple[dict[tuple[str, str], list[float]], str, list[str]]:
    """One server; for each round and each of ``settings`` (order alternated by round), call
    ``on_setting`` then measure every path: faces/s per (path, setting), the codec, the paths.
    Unary and REST: ``args.clients`` threads of a closed loop, or native load generators."""
    models, payloads, source, manifest = served_payloads(args)
    results: dict[tuple[str, str], list[float]] = {}
    with (
        served(models, args.concurrency) as server,
        grpc_client(server) as (stub, unary),
        rest_client(server) as rest,
    ):
        paths: dict[str, Callable[[], float]] = {
            "in-process, batches of 32": lambda: in_process(server, payloads, 32)["faces_per_s"],
            "gRPC stream x1": lambda: grpc_stream(stub, payloads)["faces_per_s"],
            f"gRPC unary x{args.concurrency}": lambda: closed_loop(
                unary, payloads, args.concurrency, args.seconds),
            f"REST x{args.concurrency}": lambda: closed_loop(
                rest, payloads, args.concurrency, args.seconds),
        }  # fmt: skip
        if args.clients == "native":
            loads = native_loads(server, payloads, args.concurrency, args.seconds)
            paths |= {path: lambda load=load: load()["faces_per_s"] for path, load in loads.items()}
        for body in payloads[:16]:  # connections, lazy init
            unary(body)
            rest(body)
        for r in range(args.rounds):
            for setting in settings if r % 2 == 0 else list(reversed(settings)):
                on_setting(setting, server)
                for path, measure in paths.items():
                    results.setdefault((path, setting), []).append(measure())
    return results, f"{source}; codec {manifest.ref}", list(paths)


def child_rounds(
    args: argparse.Namespace, argv: Sequence[str]
) -> tuple[dict[tuple[str, str], list[float]], list[str]]:
    """A process knob: each round runs each setting in a child process with its environment
    (order alternated by round); the child measures one round and writes it as JSON."""
    settings, environment = KNOBS[args.knob], PROCESS_KNOBS[args.knob]
    results: dict[tuple[str, str], list[float]] = {}
    paths: list[str] = []
    for r in range(args.rounds):
        for setting in list(settings) if r % 2 == 0 else list(reversed(settings)):
            one = ["--rounds", "1", "--child", setting]
            measured = run_child("benchmarks.served_ab", [*argv, *one], environment(setting))
            for path, value in measured["faces_per_s"].items():
                results.setdefault((path, setting), []).append(value)
                paths += [] if path in paths else [path]
    return results, paths


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.served_ab", __doc__)
    add_common_args(p, faces=256, quality=False)
    p.add_argument("--knob", choices=sorted(KNOBS), required=True)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seconds", type=float, default=5.0, help="per closed-loop measurement")
    p.add_argument("--concurrency", type=int, default=8, help="client threads (unary, REST)")
    p.add_argument(
        "--clients",
        choices=("thread", "native"),
        default="thread",
        help="unary and REST: closed-loop client threads in this process, or h2load and wrk "
        "(benchmarks/native_load.py), which then also sends the stream",
    )
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # a process knob's round
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    a, b = KNOBS[args.knob]
    native_load.check_clients(p, args)
    if args.child is not None:  # measure this process as it is, one round
        results, source, paths = measure_rounds(args, [args.child], lambda *_: None)
        write_json(args.json, {"faces_per_s": {k[0]: v[0] for k, v in results.items()}})
        return 0
    if args.knob in PROCESS_KNOBS:
        results, paths = child_rounds(args, _without(argv, "--rounds", "--json"))
        source = "each measurement in a fresh child process"
    else:
        results, source, paths = measure_rounds(
            args, [a, b], lambda s, server: apply(args.knob, s, server)
        )
        if args.knob not in SERVER_KNOBS:  # those act on the server, which has stopped
            apply(args.knob, b)  # leave the process as the server runs it
    rows = []
    for path in paths:
        med = {s: statistics.median(results[(path, s)]) for s in (a, b)}
        for s in (a, b):
            v = results[(path, s)]
            rows.append({"path": path, "setting": s, "median": med[s], "low": min(v),
                         "high": max(v), "ratio": med[b] / med[a] if s == b else None})  # fmt: skip
    print(f"faces: {source}; knob {args.knob}: A = {a}, B = {b}; "
          f"{args.rounds} rounds, order alternated")  # fmt: skip
    return finish("served_ab", argv, COLUMNS, rows, args.json)


def _without(argv: Sequence[str], *options: str) -> list[str]:
    """``argv`` less each of ``options`` with its value (``--opt value`` or ``--opt=value``)."""
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
        elif x in options:
            skip = True
        elif x.partition("=")[0] not in options:
            out.append(x)
    return out


if __name__ == "__main__":
    sys.exit(main())
