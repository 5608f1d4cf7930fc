"""``PredictionStore``: the one interface the server uses, over a backend (SQLite or
PostgreSQL) that knows the SQL.

Writes go through the group-commit writer (service/store/writer.py): ``add`` returns a future
that resolves once the prediction is committed, and the pipeline waits for it before answering,
so an acknowledged prediction id survives a SIGKILL of the server. Reads and the fleet state
are direct calls. Whatever the backend, a database that cannot be reached ends the call with
``StoreUnavailable`` (HTTP 503 / gRPC UNAVAILABLE, retry is safe), counted by ``on_error``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from typing import Any, Protocol

from service.errors import StoreUnavailable
from service.fleet.state import FleetState
from service.store.fleet_sql import Guard
from service.store.records import Query, check_int64, prediction_row, storable
from service.store.writer import GROUP_MAX, GroupCommitWriter, Reason, WriteSession
from service.types import Prediction

log = logging.getLogger("fercomp.service.store")

#: Every (op, reason) the error counter can carry: exported at 0 from start-up.
STORE_OPS = ("write", "read", "fleet")
STORE_ERROR_REASONS = ("connection", "timeout", "database")
LOG_EVERY_S = 10.0  # failed reads/fleet calls: one log line per op in this long (all counted)
ErrorCallback = Callable[[str, Reason, int], None]  # (op, reason, how many failed)


class Backend(Protocol):
    name: str  # "sqlite" | "postgresql"

    def open(self) -> None:
        """Create or migrate the schema (service/store/migrations.py); ready for reads."""
        ...

    def close(self) -> None: ...
    def connect_writer(self) -> WriteSession: ...
    def error_reason(self, exc: BaseException) -> Reason | None: ...
    def get(self, pred_id: str) -> dict[str, Any] | None: ...
    def query(self, q: Query) -> list[tuple[int, dict[str, Any]]]: ...
    def fleet_state(self, guard: Guard) -> FleetState: ...


class PredictionStore:
    def __init__(
        self,
        backend: Backend,
        buffer_size: int = 10_000,
        on_drop: Callable[[], None] | None = None,
        on_error: ErrorCallback | None = None,
        group_max: int = GROUP_MAX,
    ) -> None:
        self.backend = backend
        self._on_error = on_error or (lambda op, reason, n: None)
        self._writer = GroupCommitWriter(
            backend.connect_writer,
            backend.error_reason,
            buffer_size,
            on_drop,
            on_error=lambda reason, n: self._on_error("write", reason, n),
            group_max=group_max,
        )
        self._fleet: FleetState | None = None
        self._logged: dict[str, float] = {}  # op -> when a failure of it was last logged
        self._grouping = threading.local()  # .ops: the adds ``grouped`` holds on this thread

    # -- lifecycle ------------------------------------------------------------------------
    def open(self) -> None:
        """Migrate the schema, then start the writer (raises when the database cannot be
        reached: a server does not start without its store)."""
        self.backend.open()
        self._writer.start()

    def close(self) -> None:
        """Commit everything queued, then stop the writer; later writes fail at once."""
        self._writer.stop()
        self.backend.close()

    @property
    def fleet(self) -> FleetState:
        """The shared fleet state (service/fleet/state.py) in this store's database; its calls
        are direct (not queued) and raise StoreUnavailable when the database is unreachable."""
        if self._fleet is None:
            self._fleet = self.backend.fleet_state(self._guard)
        return self._fleet

    # -- writes ---------------------------------------------------------------------------
    def add(self, p: Prediction, done: Future[None] | None = None) -> Future[None]:
        """Queue ``p``; the returned future (``done`` if given) resolves once it is committed,
        or fails with QueueFull (queue full, counted), ShuttingDown, StoreUnavailable or, for
        an id no database can hold (a NUL character), InvalidField."""
        done = Future() if done is None else done
        try:
            row = prediction_row(p)
        except Exception as e:
            done.set_exception(e)
            return done
        held: list[Any] | None = getattr(self._grouping, "ops", None)
        if held is not None:
            held.append(("insert", row, done, p.id))
        else:
            self._writer.submit("insert", row, done, p.id)
        return done

    @contextmanager
    def grouped(self) -> Iterator[None]:
        """Hold this thread's ``add`` calls and queue them together on exit, as one commit.
        The engine resolves each batch's results inside it (service/state.py): a batch's
        predictions then share a commit (and its fsync) instead of the writer committing the
        first alone while the others are still being resolved. Re-entering is a no-op."""
        if getattr(self._grouping, "ops", None) is not None:
            yield
            return
        self._grouping.ops = []
        try:
            yield
        finally:
            ops, self._grouping.ops = self._grouping.ops, None
            self._writer.submit_many(ops)

    def set_label(self, pred_id: str, label: int) -> dict[str, Any] | None:
        """Attach a label (committed on return); returns the record before the change, None
        when unknown."""
        before = self.get(pred_id)
        if before is None:
            return None
        done: Future[None] = Future()
        self._writer.submit("label", (check_int64(label, "label"), pred_id), done, pred_id)
        try:
            done.result(timeout=30.0)
        except FutureTimeout:
            raise StoreUnavailable("prediction store did not commit the label in 30 s") from None
        return before

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything queued so far is committed (or has failed)."""
        self._writer.flush(timeout)

    # -- reads ----------------------------------------------------------------------------
    def get(self, pred_id: str) -> dict[str, Any] | None:
        if not storable(pred_id):
            return None  # no row can have this id
        with self._guard("read"):
            return self.backend.get(pred_id)

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
        q = Query.bounded(client_id, since, until, expression, limit, cursor)
        if q.matches_nothing:
            return [], None
        with self._guard("read"):
            rows = self.backend.query(q)
        more = len(rows) > q.limit
        rows = rows[: q.limit]
        return [rec for _, rec in rows], (rows[-1][0] if more and rows else None)

    @contextmanager
    def _guard(self, op: str) -> Iterator[None]:
        try:
            yield
        except Exception as e:
            reason = self.backend.error_reason(e)
            if reason is None:
                raise
            self._on_error(op, reason, 1)
            now = time.monotonic()
            if now - self._logged.get(op, -LOG_EVERY_S) >= LOG_EVERY_S:  # not one per request
                self._logged[op] = now
                log.warning("prediction store %s failed (%s): %s", op, reason, e)
            raise StoreUnavailable(f"prediction store unavailable ({reason}); retry") from e
