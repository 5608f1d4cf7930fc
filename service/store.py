"""Prediction store: sqlite3 (stdlib) in WAL mode, written by one background thread.

The request path only appends to a bounded in-memory buffer (``add`` never blocks; when the
buffer is full the record is dropped and counted) and one writer thread commits in small
transactions. Reads open their own short-lived connections (WAL lets them run beside the
writer) and first look at records still in the buffer, so a prediction can be fetched or
labelled the moment its response is sent.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from service.model_api import Prediction

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
    ) -> None:
        self.path = Path(path)
        self._buf: queue.Queue[Any] = queue.Queue(maxsize=buffer_size)
        self._pending: dict[str, dict[str, Any]] = {}  # id -> record, until committed
        self._lock = threading.Lock()
        self._on_drop = on_drop or (lambda: None)
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        self._thread = threading.Thread(target=self._writer, name="fercomp-store", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write everything buffered, then stop the writer."""
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
    def add(self, p: Prediction) -> bool:
        """Queue ``p`` for writing; False (and counted) when the buffer is full."""
        rec = _record(p)
        with self._lock:
            self._pending[p.id] = rec
        try:
            self._buf.put_nowait(("insert", rec))
        except queue.Full:
            with self._lock:
                self._pending.pop(p.id, None)
            self._on_drop()
            log.warning("prediction buffer full; dropped %s", p.id)
            return False
        return True

    def set_label(self, pred_id: str, label: int) -> dict[str, Any] | None:
        """Attach a label; returns the record before the change (None when unknown)."""
        before = self.get(pred_id)
        if before is None:
            return None
        with self._lock:
            rec = self._pending.get(pred_id)
            if rec is not None:
                rec["label"] = label  # for reads until the insert is committed
        # Queued after the insert, so the single writer applies it in order either way.
        self._buf.put(("label", (label, pred_id)), timeout=10.0)
        return before

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything queued so far is committed."""
        if self._thread is None:
            return
        done = threading.Event()
        self._buf.put((_FLUSH, done))
        done.wait(timeout)

    def _writer(self) -> None:
        with closing(self._connect()) as db:
            while True:
                ops = [self._buf.get()]
                while len(ops) < 256:  # group writes: one transaction per burst
                    try:
                        ops.append(self._buf.get_nowait())
                    except queue.Empty:
                        break
                stop = self._apply(db, ops)
                if stop:
                    return

    def _apply(self, db: sqlite3.Connection, ops: list[Any]) -> bool:
        stop, events, inserted = False, [], []
        try:
            db.execute("BEGIN")
            for op in ops:
                if op is None:
                    stop = True
                elif op[0] is _FLUSH:
                    events.append(op[1])
                elif op[0] == "insert":
                    with self._lock:
                        row = _sql_row(op[1])
                    db.execute(_INSERT, row)
                    inserted.append(op[1]["id"])
                elif op[0] == "label":
                    db.execute("UPDATE predictions SET label = ? WHERE id = ?", op[1])
            db.execute("COMMIT")
        except sqlite3.Error:
            log.exception("writing %d prediction ops failed", len(ops))
            if db.in_transaction:
                db.execute("ROLLBACK")
        with self._lock:
            for pid in inserted:
                self._pending.pop(pid, None)
        for ev in events:
            ev.set()
        return stop

    # -- reads ----------------------------------------------------------------------------
    def get(self, pred_id: str) -> dict[str, Any] | None:
        with self._lock:
            rec = self._pending.get(pred_id)
            if rec is not None:
                return dict(rec)
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
        self.flush()  # so a query right after a request sees it
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


def _from_row(row: sqlite3.Row) -> dict[str, Any]:
    rec = {c: row[c] for c in COLUMNS}
    rec["probabilities"] = json.loads(rec["probabilities"])
    return rec
