"""PredictionStore on its own: buffered writes, flush on close, labels while buffered."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from service.model_api import Prediction
from service.store import PredictionStore


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


def test_close_flushes_everything(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path / "p.sqlite3")
    store.open()
    for i in range(300):
        assert store.add(pred(i))
    store.close()
    assert count(tmp_path / "p.sqlite3") == 300
    with sqlite3.connect(tmp_path / "p.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_full_buffer_drops_and_counts(tmp_path: Path) -> None:
    drops = []
    store = PredictionStore(tmp_path / "p.sqlite3", buffer_size=2, on_drop=lambda: drops.append(1))
    # Not opened: no writer drains the buffer, so the third add overflows.
    assert store.add(pred(1)) and store.add(pred(2))
    assert not store.add(pred(3)) and drops == [1]
    assert store.get("id1") is not None  # readable while still buffered
    store.open()
    store.close()
    assert count(tmp_path / "p.sqlite3") == 2 and store.get("id3") is None


def test_label_and_query(tmp_path: Path) -> None:
    store = PredictionStore(tmp_path / "p.sqlite3")
    store.open()
    for i in range(5):
        store.add(pred(i, client="a" if i < 3 else "b"))
    assert store.set_label("id1", 4)["label"] is None  # returns the record before
    assert store.set_label("missing", 1) is None
    items, cursor = store.query(client_id="a", limit=2)
    assert [r["id"] for r in items] == ["id2", "id1"] and items[1]["label"] == 4
    items, cursor = store.query(client_id="a", limit=2, cursor=cursor)
    assert [r["id"] for r in items] == ["id0"] and cursor is None
    assert [r["id"] for r in store.query(since=1003.0)[0]] == ["id4", "id3"]
    store.close()
    reopened = PredictionStore(tmp_path / "p.sqlite3")
    assert reopened.get("id1")["label"] == 4
