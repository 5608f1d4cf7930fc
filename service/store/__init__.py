"""The prediction store: one interface (``PredictionStore``), two backends.

SQLite (``SqliteBackend``: the file ``db_path``) is the embedded store of one server and of
``make demo``; PostgreSQL (``PostgresBackend``: ``db_url``) is the store every replica of a
fleet shares. Both keep the same promise (a prediction is committed before it is
acknowledged, many requests share one commit), migrate the same way
(service/store/migrations.py) and hold the fleet state (``PredictionStore.fleet``).

    writer.py      group commit + futures, reconnection (backend-independent)
    base.py        PredictionStore: writes through the writer, reads, errors -> 503
    records.py     columns, rows <-> records, query bounds
    sqlite.py      SQLite backend        postgres.py    PostgreSQL backend (psycopg 3)
    pg_pool.py     PostgreSQL read pool  urls.py        URL checks, password redaction
    migrations.py  numbered schema migrations, per dialect
    fleet_sql.py   FleetState on either backend
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from service.store.base import (
    STORE_ERROR_REASONS,
    STORE_OPS,
    Backend,
    ErrorCallback,
    PredictionStore,
)
from service.store.records import COLUMNS, INT64_MAX, MAX_QUERY_LIMIT
from service.store.sqlite import SqliteBackend
from service.store.writer import GROUP_MAX


class StoreSettings(Protocol):
    """What ``build_store`` reads of ``service.settings.Settings`` (not imported here: its
    torch helpers would make this package import torch)."""

    @property
    def db_url(self) -> _Secret | None: ...
    @property
    def db_path(self) -> Path: ...
    @property
    def store_synchronous(self) -> Literal["normal", "full"]: ...
    @property
    def store_buffer_size(self) -> int: ...


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


__all__ = [
    "COLUMNS",
    "GROUP_MAX",
    "INT64_MAX",
    "MAX_QUERY_LIMIT",
    "STORE_ERROR_REASONS",
    "STORE_OPS",
    "Backend",
    "PredictionStore",
    "SqliteBackend",
    "StoreSettings",
    "build_store",
]


def build_store(
    settings: StoreSettings,
    on_drop: Callable[[], None] | None = None,
    on_error: ErrorCallback | None = None,
) -> PredictionStore:
    """The store ``settings`` ask for (not opened yet): PostgreSQL when ``db_url`` is set,
    else the SQLite file ``db_path``."""
    backend: Backend
    if settings.db_url is not None:
        from service.store.postgres import PostgresBackend  # psycopg only where it is used

        backend = PostgresBackend(settings.db_url.get_secret_value())
    else:
        backend = SqliteBackend(settings.db_path, settings.store_synchronous)
    return PredictionStore(backend, settings.store_buffer_size, on_drop=on_drop, on_error=on_error)
