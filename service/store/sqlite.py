"""SQLite backend (stdlib sqlite3, WAL mode): the embedded store of a single server.

The writer holds one connection with ``synchronous`` FULL (fsync each group commit: an
acknowledged prediction survives a power loss) or NORMAL (it survives a process crash, not an
OS crash). Reads and fleet calls open their own short-lived connections: WAL lets them run
beside the writer, and opening a local file costs microseconds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal

from service.fleet.state import FleetState
from service.store.fleet_sql import Guard, SqlFleetState
from service.store.migrations import migrate
from service.store.records import COLUMNS, Query, insert_sql, record_from_row
from service.store.writer import Reason

BUSY_TIMEOUT_S = 10.0


class SqliteSession:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.commit_sent = False

    def commit(self, inserts: list[tuple[Any, ...]], labels: list[tuple[int, str]]) -> None:
        self.commit_sent = False
        try:
            self.db.execute("BEGIN")
            if inserts:
                self.db.executemany(insert_sql("?"), inserts)
            if labels:
                self.db.executemany("UPDATE predictions SET label = ? WHERE id = ?", labels)
            self.commit_sent = True
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()


class SqliteBackend:
    name = "sqlite"

    def __init__(self, path: Path, synchronous: Literal["normal", "full"] = "full") -> None:
        self.path = Path(path)
        self.synchronous = synchronous

    def __repr__(self) -> str:
        return f"SqliteBackend({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        return db

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            _set_wal(db)
            with _transaction(db, "BEGIN IMMEDIATE"):
                migrate(db, "sqlite")

    def close(self) -> None:
        pass  # every connection but the writer's is closed after its call

    def connect_writer(self) -> SqliteSession:
        db = self._connect()
        db.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        return SqliteSession(db)

    def error_reason(self, exc: BaseException) -> Reason | None:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return "timeout"  # another writer held the lock past busy_timeout
        return "database" if isinstance(exc, sqlite3.Error) else None

    def get(self, pred_id: str) -> dict[str, Any] | None:
        with closing(self._connect()) as db:
            row = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE id = ?", (pred_id,)
            ).fetchone()
        return None if row is None else record_from_row(row)

    def query(self, q: Query) -> list[tuple[int, dict[str, Any]]]:
        sql, args = q.sql("?")
        with closing(self._connect()) as db:
            rows = db.execute(sql, args).fetchall()
        return [(int(r["seq"]), record_from_row(r)) for r in rows]

    def fleet_state(self, guard: Guard) -> FleetState:
        return SqlFleetState(self._fleet_transaction, "?", guard)

    @contextmanager
    def _fleet_transaction(self, exclusive: bool) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock at BEGIN: two set_desired calls cannot both read
        # the same highest generation.
        with (
            closing(self._connect()) as db,
            _transaction(db, "BEGIN IMMEDIATE" if exclusive else "BEGIN"),
        ):
            yield db


def _set_wal(db: sqlite3.Connection) -> None:
    """WAL mode (persistent, in the file). Switching needs the file to itself and SQLite
    answers "locked" at once, busy timeout or not, when servers open a new file together:
    retried until one of them has switched it."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")  # outside any transaction, or ignored
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def _transaction(db: sqlite3.Connection, begin: str) -> Iterator[None]:
    db.execute(begin)
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
