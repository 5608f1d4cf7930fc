"""Schema migrations: an old SQLite file is adopted as version 1 with its rows, migrations
apply once (also when replicas open a PostgreSQL store at the same moment), all or nothing,
and a schema newer than the code is used as it is."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from service.store import migrations
from service.store.migrations import LATEST, MIGRATIONS, Migration
from tests.service.test_store import StoreFactory, pred

# The schema service/store.py created before migrations existed (commit 6f22b28), verbatim.
LEGACY_SCHEMA = """
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


def versions(stores: StoreFactory) -> list[int]:
    with stores.raw() as db:
        rows = db.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [int(r[0]) for r in rows]


def test_an_existing_sqlite_file_is_adopted_without_data_loss(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(LEGACY_SCHEMA)
        db.execute("PRAGMA journal_mode=WAL")
        for i in range(3):
            db.execute(
                "INSERT INTO predictions (id, request_id, client_id, stream_id, created_at, "
                "expression, probabilities, codec_version, codec_id, classifier_version, bytes, "
                "label, transport) VALUES (?, 'r', 'old', '', ?, 'happy', '[1.0]', 'c/1', 'x', "
                "'k/1', 40, ?, 'grpc')",
                (f"old{i}", 100.0 + i, 3 if i == 1 else None),
            )
    stores = StoreFactory("sqlite", tmp_path)
    store = stores.store()
    try:
        assert versions(stores) == [m.version for m in MIGRATIONS]
        assert [r["id"] for r in store.query(client_id="old")[0]] == ["old2", "old1", "old0"]
        assert store.get("old1")["label"] == 3  # type: ignore[index]
        store.add(pred(7)).result(10)  # new rows continue after the old ones
        assert store.query(limit=1)[0][0]["id"] == "id7"
        assert store.fleet.desired() is None  # migration 2's tables exist
    finally:
        stores.close_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    factory = StoreFactory(request.param, tmp_path, request)
    yield factory
    factory.close_all()


def test_migrations_apply_once(stores: StoreFactory) -> None:
    stores.store().close()
    with stores.raw() as db:
        first = db.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    stores.store().close()
    with stores.raw() as db:
        again = db.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert sorted(map(tuple, first)) == sorted(map(tuple, again))
    assert versions(stores) == list(range(1, LATEST + 1))


def test_replicas_opening_at_once_migrate_once(stores: StoreFactory) -> None:
    """Six stores opened at the same moment on one empty database: each migration runs once
    (a second run would fail on schema_migrations' primary key), none of them fails."""
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        try:
            start.wait()
            stores.store()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and versions(stores) == list(range(1, LATEST + 1))


def test_a_failing_migration_applies_nothing(
    stores: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 3 creates a table, then fails: neither the table nor the version stays."""
    stores.store().close()
    bad = Migration(3, "broken", ("CREATE TABLE t3 (x INTEGER)", "SELECT * FROM nowhere"),
                    ("CREATE TABLE t3 (x INTEGER)", "SELECT * FROM nowhere"))  # fmt: skip
    monkeypatch.setattr(migrations, "MIGRATIONS", (*MIGRATIONS, bad))
    monkeypatch.setattr(migrations, "LATEST", 3)
    with pytest.raises(Exception, match="nowhere"):
        stores.store()
    assert versions(stores) == [1, 2]
    with stores.raw() as db, pytest.raises(Exception, match="t3"):
        db.execute("SELECT * FROM t3")


def test_a_newer_schema_is_used_as_it_is(
    stores: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    stores.store().close()
    with stores.raw() as db:
        db.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)",
            (LATEST + 1,),
        )
    store = stores.store()
    store.add(pred(1)).result(10)
    assert store.get("id1") is not None
    assert "newer than this server's" in caplog.text
