"""Served faces/s with the PostgreSQL prediction store against SQLite, side by side, one run.

Every served face is committed to the store before it is answered (group commit), so the
store sits on every request's path. This starts an in-process ``Server`` per backend, one
after the other and ``--repeat`` times in alternation (SQLite, PostgreSQL, SQLite, ...), with
the same settings, and measures gRPC unary with C client threads and one gRPC stream (the two
transport rows of ``benchmarks.served_throughput``). PostgreSQL is ``--db-url`` or, without
it, a throwaway server from Debian's binaries (tests/pg_server.py: /tmp, fsync on).

    .venv/bin/python -m benchmarks.served_store --faces 256 --concurrency 8 --repeat 2 \
        --data ../shared/data/fer2013.npz

Client and server share this machine's cores (as in served_throughput); PostgreSQL does too.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import (
    add_common_args,
    benchmark_parser,
    finish,
)
from benchmarks.served_throughput import (
    bench_settings,
    grpc_client,
    grpc_stream,
    run_concurrently,
    served_payloads,
)
from service.app import Server

COLUMNS = [
    ("backend", "store"),
    ("path", "path"),
    ("faces_per_s", "faces/s (median)"),
    ("runs", "runs"),
    ("p50_ms", "p50 ms"),
    ("ratio", "vs SQLite"),
]
BACKENDS = ("sqlite", "postgresql")


@contextmanager
def postgres_url(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.pg_server import MISSING, PgServer, pg_binaries_present

    if not pg_binaries_present():
        raise SystemExit(f"no --db-url and {MISSING}")
    server = PgServer()
    try:
        server.start()
        yield server.url
    finally:
        server.destroy()


def serve(models: Path, tmp: Path, backend: str, db_url: str, concurrency: int) -> Server:
    store: dict[str, Any] = (
        {"db_url": db_url} if backend == "postgresql" else {"db_path": tmp / "p.sqlite3"}
    )
    # fleet_enabled=False: the fleet's polls are not what this measures
    server = Server(
        bench_settings(models, concurrency, fleet_enabled=False, log_level="WARNING", **store)
    )
    server.start()
    return server


def measure(server: Server, payloads: list[bytes], concurrency: int) -> dict[str, dict]:
    with grpc_client(server) as (stub, unary):
        return {
            f"gRPC unary x{concurrency}": run_concurrently(unary, payloads, concurrency),
            "gRPC stream x1": grpc_stream(stub, payloads),
        }


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.served_store", __doc__)
    add_common_args(p, faces=256)
    p.add_argument("--concurrency", type=int, default=8, help="client threads (unary)")
    p.add_argument("--repeat", type=int, default=2, help="alternating runs per backend")
    p.add_argument("--db-url", help="a PostgreSQL to use (default: a throwaway one in /tmp)")
    args = p.parse_args(argv)
    models, payloads, source, manifest = served_payloads(args)

    runs: dict[tuple[str, str], list[dict]] = {}
    with postgres_url(args.db_url) as url, tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeat):
            for backend in BACKENDS:
                server = serve(models, Path(tmp) / f"{backend}{r}", backend, url, args.concurrency)
                try:
                    for path, result in measure(server, payloads, args.concurrency).items():
                        runs.setdefault((backend, path), []).append(result)
                finally:
                    server.stop(grace=5.0)

    rows = []
    for (backend, path), results in runs.items():
        fps = [x["faces_per_s"] for x in results]
        base = statistics.median(x["faces_per_s"] for x in runs[("sqlite", path)])
        rows.append(
            {
                "backend": backend,
                "path": path,
                "faces_per_s": statistics.median(fps),
                "runs": " / ".join(f"{v:.0f}" for v in fps),
                "p50_ms": statistics.median(x["p50_ms"] for x in results),
                "ratio": statistics.median(fps) / base,
            }
        )
    rows.sort(key=lambda r: (r["path"], r["backend"]))
    print(f"faces: {source}; codec {manifest.ref}; {args.repeat} alternating runs per backend")
    return finish("served_store", argv, COLUMNS, rows, args.json, face_source=source)


if __name__ == "__main__":
    raise SystemExit(main())
