"""PredictionStore on each backend (SQLite, PostgreSQL): commit-before-acknowledge, group
commit, a bounded write queue, labels, queries that stay inside 64-bit integers, and one bad
write failing alone. ``StoreFactory`` (used by the other store tests too) builds a store on
either backend and reads its rows behind its back, on a connection of its own."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from service.errors import InvalidField, QueueFull, ShuttingDown, StoreUnavailable
from service.store import INT64_MAX, PredictionStore, SqliteBackend
from service.types import Prediction
from tests.service.test_engine import wait_for

BACKENDS = ["sqlite", "postgresql"]


def pred(i: int, client: str = "c") -> Prediction:
    return Prediction(
        id=f"id{i}", request_id=f"r{i}", client_id=client, stream_id="", created_at=1000.0 + i,
        expression=i % 7, expression_name=("angry", "disgust", "fear", "happy", "sad",
        "surprise", "neutral")[i % 7], probabilities=[1 / 7] * 7, codec_version="c/1",
        codec_id="00112233", classifier_version="k/1", received_bytes=40, height=48, width=48,
        channels=1, decode_ms=1, inference_ms=1, queue_ms=1, batch_size=1, transport="grpc",
    )  # fmt: skip


class StoreFactory:
    """Stores of one backend over one database (a SQLite file, or a PostgreSQL schema)."""

    def __init__(
        self, kind: str, tmp_path: Path, request: pytest.FixtureRequest | None = None
    ) -> None:
        self.kind = kind
        self.path = tmp_path / "p.sqlite3"
        self.url = ""
        if kind == "postgresql":  # skips where PostgreSQL is not installed
            assert request is not None, "PostgreSQL stores need the test's request"
            self.url = request.getfixturevalue("pg_url")
        self._opened: list[PredictionStore] = []

    def backend(self) -> Any:
        if self.kind == "sqlite":
            return SqliteBackend(self.path)
        from service.store.postgres import PostgresBackend

        return PostgresBackend(self.url, open_wait=0.0)

    def store(self, open: bool = True, **kwargs: Any) -> PredictionStore:
        s = PredictionStore(self.backend(), **kwargs)
        if open:
            s.open()
            self._opened.append(s)
        return s

    @contextmanager
    def raw(self) -> Iterator[Any]:
        """A connection of its own (autocommit), with ``execute`` taking ``?`` placeholders."""
        if self.kind == "sqlite":
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                yield db
            finally:
                db.close()
        else:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                yield _QmarkConnection(conn)

    def count(self) -> int:
        with self.raw() as db:
            return int(db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0])

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """Hold the predictions table's write lock on another connection: the writer stalls."""
        with self.raw() as db:
            if self.kind == "sqlite":
                db.execute("BEGIN IMMEDIATE")
            else:
                db.execute("BEGIN")
                db.execute("LOCK TABLE predictions IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                db.execute("ROLLBACK")

    def close_all(self) -> None:
        for s in self._opened:
            s.close()


class _QmarkConnection:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.conn.execute(sql.replace("?", "%s"), params)


@pytest.fixture(params=BACKENDS)
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(request.param, tmp_path, request)
    yield factory
    factory.close_all()


@pytest.fixture
def store(stores: StoreFactory) -> PredictionStore:
    return stores.store()


def test_add_resolves_only_once_committed(stores: StoreFactory, store: PredictionStore) -> None:
    with stores.raw() as db:
        for i in range(50):
            store.add(pred(i)).result(10)
            # Another connection sees it the moment the future resolves: nothing is held back.
            assert db.execute("SELECT id FROM predictions WHERE id = ?", (f"id{i}",)).fetchone()
        if stores.kind == "sqlite":
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_adds_share_commits(stores: StoreFactory, store: PredictionStore) -> None:
    futures = [store.add(pred(i)) for i in range(300)]  # queued faster than one commit
    done, not_done = wait(futures, timeout=30)
    assert not not_done and all(f.exception() is None for f in done)
    assert stores.count() == 300


def test_grouped_adds_share_one_commit(stores: StoreFactory, store: PredictionStore) -> None:
    """Adds made inside ``grouped`` wait for its end and go out as one commit, however slowly
    they come (the engine resolves a batch inside it)."""
    commits: list[int] = []
    writer = store._writer
    real = writer._write

    def counting(group: Any) -> None:
        commits.append(len(group.inserts))
        real(group)

    writer._write = counting  # type: ignore[method-assign]
    with store.grouped():
        futures = []
        for i in range(8):
            futures.append(store.add(pred(i)))
            time.sleep(0.01)  # far longer than a commit: unheld, each would commit alone
        with store.grouped():  # re-entered: still the outer group
            futures.append(store.add(pred(8)))
        assert not any(f.done() for f in futures)  # held until the end of the group
    assert all(f.result(10) is None for f in futures)
    assert commits == [9] and stores.count() == 9


@contextmanager
def stalled_writer(
    stores: StoreFactory, buffer_size: int
) -> Iterator[tuple[PredictionStore, Any, list[int]]]:
    """A store whose writer is stuck committing ``first`` (another connection holds the write
    lock) with its queue empty: (store, first, drops counted)."""
    drops: list[int] = []
    store = stores.store(buffer_size=buffer_size, on_drop=lambda: drops.append(1))
    store.add(pred(0)).result(10)  # the writer has its connection: the next insert stalls
    with stores.write_lock():
        first = store.add(pred(1))
        wait_for(lambda: store._writer.backlog == 0)  # the writer took it and is now stuck
        yield store, first, drops


def test_a_group_on_a_full_queue_is_refused_whole(stores: StoreFactory) -> None:
    with stalled_writer(stores, buffer_size=1) as (store, first, drops):
        queued = store.add(pred(2))  # fills the queue
        with store.grouped():
            refused = [store.add(pred(i)) for i in (3, 4)]
        assert all(isinstance(f.exception(0), QueueFull) for f in refused)
        assert drops == [1, 1]  # each refused prediction counted
    assert first.result(15) is None and queued.result(15) is None
    assert stores.count() == 3


def test_full_queue_refuses_at_once_and_counts(stores: StoreFactory) -> None:
    with stalled_writer(stores, buffer_size=2) as (store, first, drops):
        queued = [store.add(pred(2)), store.add(pred(3))]
        refused = store.add(pred(4))
        assert isinstance(refused.exception(0), QueueFull) and drops == [1]
        assert not first.done() and not any(f.done() for f in queued)
    for f in (first, *queued):
        f.result(15)
    assert stores.count() == 4 and store.get("id4") is None


def test_closed_store_refuses(stores: StoreFactory) -> None:
    store = stores.store(open=False)
    assert isinstance(store.add(pred(1)).exception(0), ShuttingDown)  # never opened
    store.open()
    store.add(pred(2)).result(10)
    store.close()
    assert isinstance(store.add(pred(3)).exception(0), ShuttingDown)
    assert stores.count() == 1


def test_label_and_query(stores: StoreFactory, store: PredictionStore) -> None:
    for i in range(5):
        store.add(pred(i, client="a" if i < 3 else "b")).result(10)
    assert store.set_label("id1", 4)["label"] is None  # type: ignore[index]  # the record before
    assert store.set_label("missing", 1) is None
    items, cursor = store.query(client_id="a", limit=2)
    assert [r["id"] for r in items] == ["id2", "id1"] and items[1]["label"] == 4
    items, cursor = store.query(client_id="a", limit=2, cursor=cursor)
    assert [r["id"] for r in items] == ["id0"] and cursor is None
    assert [r["id"] for r in store.query(since=1003.0)[0]] == ["id4", "id3"]
    assert [r["id"] for r in store.query(until=1001.0, expression="angry")[0]] == ["id0"]
    # What was written comes back as it was, on a store opened afresh.
    reopened = stores.store()
    assert reopened.get("id1") == {
        "id": "id1", "request_id": "r1", "client_id": "a", "stream_id": "", "created_at": 1001.0,
        "expression": "disgust", "probabilities": [1 / 7] * 7, "codec_version": "c/1",
        "codec_id": "00112233", "classifier_version": "k/1", "bytes": 40, "label": 4,
        "transport": "grpc",
    }  # fmt: skip


def test_query_bounds_stay_inside_64_bit_integers(store: PredictionStore) -> None:
    for i in range(3):
        store.add(pred(i)).result(10)
    everything = [r["id"] for r in store.query()[0]]
    # Past INT64_MAX the drivers cannot bind; a cursor that large means "from the top".
    for cursor in (INT64_MAX, INT64_MAX + 1, 10**30, 10**4000):
        assert [r["id"] for r in store.query(cursor=cursor)[0]] == everything
    assert store.query(cursor=-(10**30))[0] == []
    assert len(store.query(limit=10**30)[0]) == 3
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            store.query(since=bad)
    with pytest.raises(ValueError, match="64-bit INTEGER"):
        store.set_label("id0", 2**64)


@pytest.mark.parametrize("bad", ["a\x00b", "\udc80"])
def test_unstorable_ids_fail_alone(store: PredictionStore, bad: str) -> None:
    """PostgreSQL text holds no NUL, and no driver encodes a lone surrogate (a JSON "\\udc80"
    decodes to one): such a request is refused by itself, and lookups of such ids find
    nothing instead of failing."""
    refused = store.add(replace(pred(1), client_id=bad))
    fine = store.add(pred(2))
    assert isinstance(refused.exception(10), InvalidField)
    fine.result(10)
    assert store.get(bad) is None and store.query(client_id=bad) == ([], None)
    assert store.set_label(bad, 1) is None


def test_a_refused_write_fails_only_its_own_request(
    stores: StoreFactory, store: PredictionStore
) -> None:
    """A row the database refuses (here a duplicate id) in a group of others: the group is
    retried write by write, so only that request fails."""
    store.add(pred(1)).result(10)
    with stores.write_lock():  # let the next writes pile up into one group
        blocked = store.add(pred(0))
        wait_for(lambda: store._writer.backlog == 0)
        group = [store.add(pred(2)), store.add(pred(1)), store.add(pred(3))]
    blocked.result(10)
    assert group[0].result(10) is None and group[2].result(10) is None
    assert isinstance(group[1].exception(10), StoreUnavailable)
    assert stores.count() == 4


def test_a_failed_connect_is_retried_after_a_backoff(
    store: PredictionStore, monkeypatch: Any
) -> None:
    """The writer cannot connect: that group fails at once, a later one reconnects."""
    calls: list[int] = []
    real: Callable[..., Any] = store.backend.connect_writer

    def broken_once() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return real()

    monkeypatch.setattr(store._writer, "_connect", broken_once)
    store._writer._close_session()
    assert isinstance(store.add(pred(1)).exception(10), StoreUnavailable)
    wait_for(lambda: store.add(pred(2)).exception(10) is None, timeout=10)
