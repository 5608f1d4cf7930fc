"""PostgreSQL backend (psycopg 3): the store every replica of a fleet shares.

Durability is SQLite's promise: the writer commits a group in one transaction and the futures
resolve only after COMMIT returns, with ``synchronous_commit`` set on for its session (the
WAL record is flushed before COMMIT returns, whatever the server's default).

Reads and fleet calls borrow connections from a small pool (service/store/pg_pool.py: at
most ``READ_POOL_MAX``, autocommit, each checked with an empty query before it is lent). A
connection per call would cost a backend process fork and authentication each time (2.2 ms on
this machine's loopback, more against a remote server with TLS) and nothing would bound how many
a busy replica opens. With the database down a read fails at once with StoreUnavailable
(connection refused); the first read after it is back succeeds.

Connections carry timeouts unless the URL sets its own (``CONNECT_DEFAULTS``): a connect
attempt gives up after ``connect_timeout``, and TCP keepalives plus ``tcp_user_timeout`` end a
connection to a host that vanished (no RST) in about ten seconds instead of hanging the writer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from service.fleet.state import FleetState
from service.store.fleet_sql import Guard, SqlFleetState
from service.store.migrations import migrate
from service.store.pg_pool import PoolExhausted, ReadPool
from service.store.records import COLUMNS, Query, insert_sql, record_from_row
from service.store.urls import redact_url
from service.store.writer import Reason

log = logging.getLogger("fercomp.service.store")

READ_POOL_MAX = 8  # per replica, plus the writer's connection: mind max_connections (100)
POOL_TIMEOUT_S = 5.0  # a read waits this long for a free connection, then fails (timeout)
OPEN_WAIT_S = 30.0  # a server started before its database waits this long for it
CONNECT_DEFAULTS = {
    "connect_timeout": "3",
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    "tcp_user_timeout": "10000",  # ms
    "application_name": "fercomp",
}
# Advisory lock keys (pg_advisory_xact_lock(int, int)): "fcmp" and what it guards.
LOCK_SPACE = 0x66636D70
MIGRATION_LOCK, FLEET_LOCK = 1, 2


def conninfo(url: str) -> str:
    """``url`` with ``CONNECT_DEFAULTS`` for every parameter it does not set itself."""
    params = conninfo_to_dict(url)
    return make_conninfo("", **(CONNECT_DEFAULTS | params))


class PostgresSession:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.commit_sent = False

    def commit(self, inserts: list[tuple[Any, ...]], labels: list[tuple[int, str]]) -> None:
        self.commit_sent = False
        try:
            with self.conn.cursor() as cur:  # executemany pipelines the statements
                if inserts:
                    cur.executemany(insert_sql("%s"), inserts)
                if labels:
                    cur.executemany("UPDATE predictions SET label = %s WHERE id = %s", labels)
            self.commit_sent = True
            self.conn.commit()
        except BaseException:
            if not self.conn.broken:
                with suppress(psycopg.Error):  # the writer closes it next anyway
                    self.conn.rollback()
            raise

    def close(self) -> None:
        self.conn.close()


class PostgresBackend:
    name = "postgresql"

    def __init__(self, url: str, open_wait: float = OPEN_WAIT_S) -> None:
        self._conninfo = conninfo(url)
        self.url = redact_url(url)  # for logs and repr only
        self.open_wait = open_wait
        self._pool: ReadPool | None = None

    def __repr__(self) -> str:
        return f"PostgresBackend({self.url!r})"

    def connect(self, autocommit: bool = False) -> psycopg.Connection[Any]:
        return psycopg.connect(self._conninfo, autocommit=autocommit)

    def open(self) -> None:
        deadline = time.monotonic() + self.open_wait
        while True:
            try:
                with self.connect() as conn, conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s::integer, %s::integer)",
                        (LOCK_SPACE, MIGRATION_LOCK),
                    )
                    migrate(conn, "postgresql")
                break
            except psycopg.OperationalError as e:
                if time.monotonic() >= deadline:
                    raise
                log.warning("waiting for the prediction store at %s: %s", self.url, e)
                time.sleep(1.0)
        self._pool = ReadPool(
            lambda: self.connect(autocommit=True), READ_POOL_MAX, timeout=POOL_TIMEOUT_S
        )

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def connect_writer(self) -> PostgresSession:
        conn = self.connect()
        try:
            # Durability must not depend on the server's default: COMMIT returns only once
            # the WAL record is flushed (and, with synchronous standbys, replicated).
            conn.execute("SET synchronous_commit TO on")
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return PostgresSession(conn)

    def error_reason(self, exc: BaseException) -> Reason | None:
        if isinstance(exc, PoolExhausted | psycopg.errors.QueryCanceled):
            return "timeout"
        if isinstance(exc, psycopg.InterfaceError):
            return "connection"  # used a closed connection
        if isinstance(exc, psycopg.OperationalError):
            state = exc.sqlstate
            # None: libpq's own failure (refused, reset, no route); 08: connection exception;
            # 57P: the server shutting down or starting up.
            if state is None or state.startswith(("08", "57P")):
                return "connection"
            return "database"
        return "database" if isinstance(exc, psycopg.Error) else None

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        if self._pool is None:
            raise psycopg.InterfaceError("the prediction store is not open")
        with self._pool.connection() as conn:
            yield conn

    def get(self, pred_id: str) -> dict[str, Any] | None:
        with self._read() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {', '.join(COLUMNS)} FROM predictions WHERE id = %s", (pred_id,)
            ).fetchone()
        return None if row is None else record_from_row(row)

    def query(self, q: Query) -> list[tuple[int, dict[str, Any]]]:
        sql, args = q.sql("%s")
        with self._read() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(sql, args).fetchall()
        return [(int(r["seq"]), record_from_row(r)) for r in rows]

    def fleet_state(self, guard: Guard) -> FleetState:
        return SqlFleetState(self._fleet_transaction, "%s", guard)

    @contextmanager
    def _fleet_transaction(self, exclusive: bool) -> Iterator[psycopg.Connection[Any]]:
        with self._read() as conn, conn.transaction():
            if exclusive:  # every replica's set_desired queues here: one generation each
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s::integer, %s::integer)",
                    (LOCK_SPACE, FLEET_LOCK),
                )
            yield conn
