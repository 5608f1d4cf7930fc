"""PredictionStore on its own: commit-before-acknowledge, group commit, a bounded write queue,
labels, and queries that stay inside SQLite's INTEGER range."""

from __future__ import annotations

import sqlite3
from concurrent.futures import wait
from pathlib import Path

import pytest

from service.errors import QueueFull, ShuttingDown
from service.store import INT64_MAX, PredictionStore
from service.types import Prediction
from tests.service.test_engine import wait_for


def pred(i: int, client: str = "c") -> Prediction:
    return Prediction(
        id=f"id{i}", request_id=f"r{i}", client_id=client, stream_id="", created_at=1000.0 + i,
        expression=i % 7, expression_name=("angry", "disgust", "fear", "happy", "sad",
        "surprise", "neutral")[i % 7], probabilities=[1 / 7] * 7, codec_version="c/1",
        codec_id="00112233", classifier_version="k/1", received_bytes=40, height=48, width=48,
        channels=1, decode_ms=1, inference_ms=1, queue_ms=1, batch_size=1, transport="grpc",
    )  # fmt: skip


def count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])


@pytest.fixture
def store(tmp_path: Path):
    s = PredictionStore(tmp_path / "p.sqlite3")
    s.open()
    yield s
    s.close()


def test_add_resolves_only_once_committed(store: PredictionStore) -> None:
    for i in range(50):
        store.add(pred(i)).result(10)
        # Another connection sees it the moment the future resolves: nothing is held back.
        with sqlite3.connect(store.path) as db:
            assert db.execute("SELECT id FROM predictions WHERE id = ?", (f"id{i}",)).fetchone()
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_adds_share_commits(store: PredictionStore) -> None:
    futures = [store.add(pred(i)) for i in range(300)]  # queued faster than one commit
    done, not_done = wait(futures, timeout=30)
    assert not not_done and all(f.exception() is None for f in done)
    assert count(store.path) == 300


def test_full_queue_refuses_at_once_and_counts(tmp_path: Path) -> None:
    drops = []
    store = PredictionStore(tmp_path / "p.sqlite3", buffer_size=2, on_drop=lambda: drops.append(1))
    store.open()
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the writer stalls on its insert
    try:
        first = store.add(pred(1))
        wait_for(lambda: store._buf.qsize() == 0)  # the writer took it and is now stuck
        queued = [store.add(pred(2)), store.add(pred(3))]
        refused = store.add(pred(4))
        assert isinstance(refused.exception(0), QueueFull) and drops == [1]
        assert not first.done() and not any(f.done() for f in queued)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    for f in (first, *queued):
        f.result(15)
    store.close()
    assert count(tmp_path / "p.sqlite3") == 3 and store.get("id4") is None


def test_closed_store_refuses(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path / "p.sqlite3")
    assert isinstance(store.add(pred(1)).exception(0), ShuttingDown)  # never opened
    store.open()
    store.add(pred(2)).result(10)
    store.close()
    assert isinstance(store.add(pred(3)).exception(0), ShuttingDown)
    assert count(tmp_path / "p.sqlite3") == 1


def test_label_and_query(tmp_path: Path, store: PredictionStore) -> None:
    for i in range(5):
        store.add(pred(i, client="a" if i < 3 else "b")).result(10)
    assert store.set_label("id1", 4)["label"] is None  # returns the record before
    assert store.set_label("missing", 1) is None
    items, cursor = store.query(client_id="a", limit=2)
    assert [r["id"] for r in items] == ["id2", "id1"] and items[1]["label"] == 4
    items, cursor = store.query(client_id="a", limit=2, cursor=cursor)
    assert [r["id"] for r in items] == ["id0"] and cursor is None
    assert [r["id"] for r in store.query(since=1003.0)[0]] == ["id4", "id3"]
    reopened = PredictionStore(store.path)
    assert reopened.get("id1")["label"] == 4


def test_query_bounds_stay_inside_sqlite_integers(store: PredictionStore) -> None:
    for i in range(3):
        store.add(pred(i)).result(10)
    everything = [r["id"] for r in store.query()[0]]
    # Past INT64_MAX sqlite3 raises OverflowError; a cursor that large means "from the top".
    for cursor in (INT64_MAX, INT64_MAX + 1, 10**30, 10**4000):
        assert [r["id"] for r in store.query(cursor=cursor)[0]] == everything
    assert store.query(cursor=-(10**30))[0] == []
    assert len(store.query(limit=10**30)[0]) == 3
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            store.query(since=bad)
    with pytest.raises(ValueError, match="INTEGER"):
        store.set_label("id0", 2**64)
