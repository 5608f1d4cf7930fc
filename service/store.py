"""Prediction store: sqlite3 (stdlib) in WAL mode, written by one background thread.

Durability: ``add`` returns a future that resolves once the record is committed, and the
pipeline waits for it before answering, so an acknowledged prediction id survives a SIGKILL
(and, with ``synchronous=full``, a power loss). Group commit keeps that cheap: the writer takes
everything queued since its last commit into one transaction, so concurrent requests share one
commit (and one fsync) instead of paying for one each. The queue is bounded: when it is full,
``add`` fails at once with ``QueueFull`` rather than making requests wait behind a slow disk.
Reads open their own short-lived connections (WAL lets them run beside the writer).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import closing
from pathlib import Path
from typing import Any, Literal

from service.errors import QueueFull, ShuttingDown, StoreUnavailable
from service.types import Prediction

log = logging.getLogger("fercomp.service.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    expression TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    codec_version TEXT NOT NULL,
    codec_id TEXT NOT NULL,
    classifier_version TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    label INTEGER,
    transport TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_client ON predictions (client_id, seq);
CREATE INDEX IF NOT EXISTS predictions_created ON predictions (created_at);
"""
COLUMNS = (
    "id", "request_id", "client_id", "stream_id", "created_at", "expression", "probabilities",
    "codec_version", "codec_id", "classifier_version", "bytes", "label", "transport",
)  # fmt: skip
_INSERT = f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_FLUSH: Any = object()
INT64_MAX = 2**63 - 1  # SQLite INTEGER range: Python ints beyond it raise OverflowError
MAX_QUERY_LIMIT = 1000
GROUP_MAX = 1024  # ops per transaction; a bound so one commit never holds the lock for long


def _record(p: Prediction) -> dict[str, Any]:
    values = (
        p.id, p.request_id, p.client_id, p.stream_id, p.created_at, p.expression_name,
        list(p.probabilities), p.codec_version, p.codec_id, p.classifier_version,
        p.received_bytes, p.label, p.transport,
    )  # fmt: skip
    return dict(zip(COLUMNS, values, strict=True))


def _sql_row(rec: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(json.dumps(rec[c]) if c == "probabilities" else rec[c] for c in COLUMNS)


class PredictionStore:
    def __init__(
        self,
        path: Path,
        buffer_size: int = 10_000,
        on_drop: Callable[[], None] | None = None,
        synchronous: Literal["normal", "full"] = "full",
        group_max: int = GROUP_MAX,
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.group_max = group_max  # 1 = a commit per write (benchmarks/store_commit.py)
        self._buf: queue.Queue[Any] = queue.Queue(maxsize=buffer_size)
        self._on_drop = on_drop or (lambda: None)
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self._closed = False
        self._thread = threading.Thread(target=self._writer, name="fercomp-store", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Commit everything queued, then stop the writer; later writes fail at once."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._buf.put(None)
            thread.join()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA busy_timeout=10000")
        return db

    # -- writes ---------------------------------------------------------------------------
    def add(self, p: Prediction, done: Future[None] | None = None) -> Future[None]:
        """Queue ``p``; the returned future (``done`` if given) resolves once it is committed,
        or fails with QueueFull (queue full, counted), ShuttingDown or StoreUnavailable."""
        done = Future() if done is None else done
        self._enqueue(("insert", _sql_row(_record(p)), done), p.id)
        return done

    def set_label(self, pred_id: str, label: int) -> dict[str, Any] | None:
        """Attach a label (committed on return); returns the record before the change, None
        when unknown."""
        before = self.get(pred_id)
        if before is None:
            return None
        done: Future[None] = Future()
        self._enqueue(("label", (_int64(label, "label"), pred_id), done), pred_id)
        try:
            done.result(timeout=30.0)
        except FutureTimeout:
            raise StoreUnavailable("prediction store did not commit the label in 30 s") from None
        return before

    def _enqueue(self, op: tuple[str, Any, Future[None]], pred_id: str) -> None:
        done = op[2]
        if self._closed or self._thread is None:
            done.set_exception(ShuttingDown("prediction store is closed"))
            return
        try:
            self._buf.put_nowait(op)
        except queue.Full:
            self._on_drop()
            log.warning("prediction store queue full; refused %s", pred_id)
            done.set_exception(
                QueueFull(f"prediction store is behind ({self._buf.maxsize} writes queued)")
            )

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything queued so far is committed."""
        if self._thread is None:
            return
        done = threading.Event()
        self._buf.put((_FLUSH, done))
        done.wait(timeout)

    def _writer(self) -> None:
        with closing(self._connect()) as db:
            db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
            stop = False
            while not stop:
                ops = [self._buf.get()]
                # Group commit: whatever queued up while the last commit ran goes into this one.
                while len(ops) < self.group_max:
                    try:
                        ops.append(self._buf.get_nowait())
                    except queue.Empty:
                        break
                stop = self._apply(db, ops)
        # Anything that slipped in after the stop sentinel would wait forever: fail it.
        while True:
            try:
                op = self._buf.get_nowait()
            except queue.Empty:
                return
            if op is not None and isinstance(op[-1], Future):
                op[-1].set_exception(ShuttingDown("prediction store is closed"))

    def _apply(self, db: sqlite3.Connection, ops: list[Any]) -> bool:
        stop, events, waiters = False, [], []
        error: BaseException | None = None
        try:
            db.execute("BEGIN")
            for op in ops:
                if op is None:
                    stop = True
                elif op[0] is _FLUSH:
                    events.append(op[1])
                elif op[0] == "insert":
                    db.execute(_INSERT, op[1])
                    waiters.append(op[2])
                elif op[0] == "label":
                    db.execute("UPDATE predictions SET label = ? WHERE id = ?", op[1])
                    waiters.append(op[2])
            db.execute("COMMIT")
        except sqlite3.Error as e:
            log.exception("writing %d prediction ops failed", len(ops))
            error = e
            if db.in_transaction:
                db.execute("ROLLBACK")
        # Only now, after COMMIT returned, may the requests behind these ops be acknowledged.
        for w in waiters:
            if error is None:
                w.set_result(None)
            else:
                w.set_exception(StoreUnavailable(f"prediction store write failed: {error}"))
        for ev in events:
            ev.set()
        return stop

    # -- reads ----------------------------------------------------------------------------
    def get(self, pred_id: str) -> dict[str, Any] | None:
        with closing(self._connect()) as db:
            row = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE id = ?", (pred_id,)
            ).fetchone()
        return None if row is None else _from_row(row)

    def query(
        self,
        client_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        expression: str | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first; returns (records, next cursor or None). Cursors are opaque ints."""
        for name, t in (("since", since), ("until", until)):
            if t is not None and not math.isfinite(t):
                raise ValueError(f"{name} must be a finite number of seconds, got {t}")
        if cursor is not None:
            # seq is in 1..INT64_MAX, so clamping changes no answer and keeps SQLite's binding
            # from overflowing on huge cursors.
            cursor = min(max(cursor, 0), INT64_MAX)
        limit = min(max(limit, 0), MAX_QUERY_LIMIT)
        where, args = [], []
        for cond, val in (
            ("client_id = ?", client_id), ("created_at >= ?", since),
            ("created_at < ?", until), ("expression = ?", expression), ("seq < ?", cursor),
        ):  # fmt: skip
            if val is not None:
                where.append(cond)
                args.append(val)
        sql = f"SELECT seq, {', '.join(COLUMNS)} FROM predictions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        with closing(self._connect()) as db:
            rows = db.execute(sql, (*args, limit + 1)).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        return [_from_row(r) for r in rows], (rows[-1]["seq"] if more and rows else None)


def _int64(value: int, name: str) -> int:
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ValueError(f"{name} {value} is outside SQLite's INTEGER range")
    return value


def _from_row(row: sqlite3.Row) -> dict[str, Any]:
    rec = {c: row[c] for c in COLUMNS}
    rec["probabilities"] = json.loads(rec["probabilities"])
    return rec
