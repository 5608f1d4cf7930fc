"""What commit-before-acknowledge costs the prediction store, with and without group commit.

C writer threads (the request threads of a server) each store predictions one at a time and
wait until each is committed, as ``Pipeline.wait`` does before answering. Rows:

  group commit        the store as served: one transaction for whatever queued up meanwhile
  commit per write    ``group_max=1``: one transaction (and with synchronous=full one fsync)
                      per prediction, what commit-before-acknowledge costs without grouping

for ``synchronous`` full (fsync per commit) and normal. The store file lives in --dir (default:
the system temp directory; put it on the disk the server would use). With --db-url, the same two
rows on that PostgreSQL database as well (synchronous_commit on; it writes predictions there
under ids of its own: use a scratch database).

    .venv/bin/python -m benchmarks.store_commit --writers 8 --seconds 5 [--db-url URL]
"""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import benchmark_parser, finish, ms_stats
from service.store import Backend, PredictionStore, SqliteBackend
from service.types import Prediction

COLUMNS = [
    ("mode", "mode"), ("synchronous", "synchronous"), ("writers", "writers"),
    ("writes_per_s", "acknowledged writes/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
]  # fmt: skip


_RUN = uuid.uuid4().hex[:8]  # ids of this run: rows of an earlier run never collide


def _prediction(i: int) -> Prediction:
    return Prediction(
        id=f"{_RUN}-{i}", request_id=f"r{i}", client_id="bench", stream_id="",
        created_at=time.time(),
        expression=3, expression_name="happy", probabilities=[1 / 7] * 7, codec_version="c/1",
        codec_id="00112233", classifier_version="k/1", received_bytes=240, height=48, width=48,
        channels=1, decode_ms=1.0, inference_ms=1.0, queue_ms=1.0, batch_size=1, transport="grpc",
    )  # fmt: skip


def measure(backend: Backend, writers: int, seconds: float, group_max: int) -> dict:
    store = PredictionStore(backend, group_max=group_max)
    store.open()
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(group_max * 10**9, (group_max + 1) * 10**9))  # ids unique per row
    stop = time.perf_counter() + seconds

    def writer() -> None:
        mine = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            store.add(_prediction(next(counter))).result(60)
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    store.close()
    return {"writes_per_s": len(latencies) / elapsed, **ms_stats(latencies, (50, 99))}


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.store_commit", __doc__)
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0, help="per row")
    p.add_argument("--dir", type=Path, default=None, help="where the store file goes")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--db-url", default=None, help="also measure this PostgreSQL database")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fercomp-store-", dir=args.dir) as tmp:
        for sync in ("full", "normal"):
            for mode, group_max in (("group commit", 1024), ("commit per write", 1)):
                path = Path(tmp) / f"{sync}-{group_max}.sqlite3"
                backend = SqliteBackend(path, sync)
                r = measure(backend, args.writers, args.seconds, group_max)
                rows.append({"mode": mode, "synchronous": sync, "writers": args.writers} | r)
    for mode, group_max in (("group commit", 1024), ("commit per write", 1)) * bool(args.db_url):
        from service.store.postgres import PostgresBackend

        r = measure(PostgresBackend(args.db_url), args.writers, args.seconds, group_max)
        rows.append({"mode": f"{mode} (PostgreSQL)", "synchronous": "on",
                     "writers": args.writers} | r)  # fmt: skip
    return finish("store_commit", argv, COLUMNS, rows, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
