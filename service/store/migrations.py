"""Schema migrations: one ordered list, SQL per dialect, applied at ``open`` in a transaction.

``schema_migrations`` (version, name, applied_at) records what a database has. At open, each
backend takes its write lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction holding
``pg_advisory_xact_lock``, so replicas starting at once apply each migration exactly once and
the others wait, then find nothing to do), applies the versions it lacks in order, records
them and commits: all or nothing.

Migrations only ever add (tables, indexes, nullable columns), so during a rolling update a
replica of the previous release keeps working on a schema one step ahead; a database newer
than this code is therefore used as it is, with a warning. Migration 1 is the schema of the
store before migrations existed, written with ``IF NOT EXISTS``: a file made by that code is
adopted as version 1 as it is, rows and all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

log = logging.getLogger("fercomp.service.store")

Dialect = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


_PREDICTION_INDEXES = (
    "CREATE INDEX IF NOT EXISTS predictions_client ON predictions (client_id, seq)",
    "CREATE INDEX IF NOT EXISTS predictions_created ON predictions (created_at)",
)
# Exactly the schema the store created before migrations (SQLite), so an old file is adopted.
_PREDICTIONS_SQLITE = """CREATE TABLE IF NOT EXISTS predictions (
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
)"""
# BIGINT where SQLite has INTEGER (64 bits both). probabilities stays JSON text, as in SQLite:
# both backends return exactly what was written (cast to jsonb to query inside it).
_PREDICTIONS_POSTGRESQL = """CREATE TABLE IF NOT EXISTS predictions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expression TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    codec_version TEXT NOT NULL,
    codec_id TEXT NOT NULL,
    classifier_version TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    label BIGINT,
    transport TEXT NOT NULL
)"""


def _fleet_tables(integer: str, real: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS fleet_desired (
    generation {integer} PRIMARY KEY CHECK (generation > 0),
    codec TEXT,
    classifier TEXT,
    requested_at {real} NOT NULL,
    requested_by TEXT NOT NULL
)""",
        f"""CREATE TABLE IF NOT EXISTS fleet_instances (
    instance TEXT PRIMARY KEY,
    codec TEXT NOT NULL,
    classifier TEXT NOT NULL,
    generation {integer} NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('converged', 'applying', 'failed', 'diverged')),
    error TEXT NOT NULL,
    started_at {real} NOT NULL,
    heartbeat_at {real} NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS fleet_instances_heartbeat ON fleet_instances (heartbeat_at)",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "predictions",
        (_PREDICTIONS_SQLITE, *_PREDICTION_INDEXES),
        (_PREDICTIONS_POSTGRESQL, *_PREDICTION_INDEXES),
    ),
    Migration(
        2,
        "fleet state",
        _fleet_tables("INTEGER", "REAL"),
        _fleet_tables("BIGINT", "DOUBLE PRECISION"),
    ),
)
LATEST = MIGRATIONS[-1].version

_SCHEMA_MIGRATIONS = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
    "name TEXT NOT NULL, applied_at REAL NOT NULL)",
    "postgresql": "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
    "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)",
}


class Executor(Protocol):
    """A DB-API connection inside the caller's transaction (sqlite3 and psycopg both)."""

    def execute(self, sql: Any, params: Any = ..., /) -> Any: ...


def migrate(db: Executor, dialect: Dialect) -> list[int]:
    """Apply the migrations ``db`` lacks, in order; the caller holds the transaction and the
    lock. Returns the versions applied."""
    ph = "?" if dialect == "sqlite" else "%s"
    db.execute(_SCHEMA_MIGRATIONS[dialect])
    have = {int(r[0]) for r in db.execute("SELECT version FROM schema_migrations").fetchall()}
    if have and max(have) > LATEST:
        log.warning("the store's schema is at version %d, newer than this server's %d; "
                    "using it as it is (migrations only add)", max(have), LATEST)  # fmt: skip
    applied = []
    for m in MIGRATIONS:
        if m.version in have:
            continue
        for statement in m.statements(dialect):
            db.execute(statement)
        db.execute(
            f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({ph}, {ph}, {ph})",
            (m.version, m.name, time.time()),
        )
        applied.append(m.version)
    if applied:
        log.info("store schema migrated (%s): applied %s", dialect, applied)
    return applied
