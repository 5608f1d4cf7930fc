"""The group-commit writer both backends share: one thread, one connection, futures resolved
only after COMMIT returns.

Requests queue their writes (bounded: a full queue refuses at once with ``QueueFull``); the
writer takes everything queued since its last commit into one transaction, so concurrent
requests share a commit (and its fsync) instead of paying for one each.

When the database is gone (connection refused or lost) the group's futures fail with
``StoreUnavailable`` - nothing is acknowledged that was not committed - and the writer
reconnects by itself: while it is down, writes fail at once instead of waiting, and a new
connection is tried after a backoff that doubles from ``BACKOFF_MIN`` to ``BACKOFF_MAX``. A
group that failed on a connection reused from before (say the server restarted while it was
idle) before COMMIT was sent is retried once on a fresh one: nothing of it can have been
committed. A group the database refused for its content (one bad row) is retried write by
write, so only the offending request fails.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.errors import QueueFull, ShuttingDown, StoreUnavailable

log = logging.getLogger("fercomp.service.store")

GROUP_MAX = 1024  # ops per transaction; a bound so one commit never holds locks for long
BACKOFF_MIN = 0.1  # seconds before the first reconnection attempt after a failure
BACKOFF_MAX = 2.0  # the longest wait between attempts: recovery within 2 s of the DB's return
Reason = str  # "connection" | "timeout" | "database": see ``ErrorReason``


class WriteSession(Protocol):
    """One open connection of the writer."""

    commit_sent: bool  # set just before COMMIT goes out: past it, the outcome is unknown

    def commit(self, inserts: list[tuple[Any, ...]], labels: list[tuple[int, str]]) -> None:
        """Insert rows and set labels in one transaction; return once COMMIT has returned."""
        ...

    def close(self) -> None: ...


class ErrorReason(Protocol):
    def __call__(self, exc: BaseException) -> Reason | None:
        """``connection`` (the database cannot be reached, or the connection broke),
        ``timeout`` or ``database`` (it refused the statement); None: not a database error."""
        ...


@dataclass
class _Group:
    inserts: list[tuple[tuple[Any, ...], Future[None]]] = field(default_factory=list)
    labels: list[tuple[tuple[int, str], Future[None]]] = field(default_factory=list)
    flushes: list[threading.Event] = field(default_factory=list)
    stop: bool = False

    @property
    def futures(self) -> list[Future[None]]:
        return [f for _, f in self.inserts] + [f for _, f in self.labels]


_FLUSH = object()


class GroupCommitWriter:
    def __init__(
        self,
        connect: Callable[[], WriteSession],
        error_reason: ErrorReason,
        buffer_size: int = 10_000,
        on_drop: Callable[[], None] | None = None,
        on_error: Callable[[Reason, int], None] | None = None,
        group_max: int = GROUP_MAX,
    ) -> None:
        self._connect = connect
        self._error_reason = error_reason
        self._buf: queue.Queue[Any] = queue.Queue(maxsize=buffer_size)
        self._on_drop = on_drop or (lambda: None)
        self._on_error = on_error or (lambda reason, n: None)  # n: writes that failed
        self.group_max = group_max  # 1 = a commit per write (benchmarks/store_commit.py)
        self._thread: threading.Thread | None = None
        self._closed = True
        self._session: WriteSession | None = None
        self._retry_at = 0.0  # monotonic; no connection attempt before it
        self._backoff = BACKOFF_MIN
        self._down_since: float | None = None  # monotonic, while the database is unreachable

    @property
    def backlog(self) -> int:
        return self._buf.qsize()

    def start(self) -> None:
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fercomp-store", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Commit everything queued, then stop; later writes fail at once."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._buf.put(None)
            thread.join()

    # -- producers ------------------------------------------------------------------------
    def submit(self, kind: str, args: tuple[Any, ...], done: Future[None], what: str) -> None:
        """Queue an ``insert`` (a row) or a ``label`` ((label, id)); ``done`` resolves once it
        is committed, or fails with QueueFull (counted by ``on_drop``), ShuttingDown or
        StoreUnavailable."""
        self.submit_many([(kind, args, done, what)])

    def submit_many(self, ops: list[tuple[str, tuple[Any, ...], Future[None], str]]) -> None:
        """``submit`` for several ops as one item of the bounded queue: the writer takes them
        together, so they share one commit (a batch's predictions: put one by one, the writer
        woke after the first and committed it alone). Refused together, each counted."""
        if not ops:
            return
        if self._closed or self._thread is None:
            for _, _, done, _ in ops:
                done.set_exception(ShuttingDown("prediction store is closed"))
            return
        try:
            self._buf.put_nowait([(kind, args, done) for kind, args, done, _ in ops])
        except queue.Full:
            log.warning("prediction store queue full; refused %s", ", ".join(w for *_, w in ops))
            for _, _, done, _ in ops:
                self._on_drop()
                done.set_exception(
                    QueueFull(f"prediction store is behind ({self._buf.maxsize} writes queued)")
                )

    def flush(self, timeout: float = 10.0) -> None:
        """Block until everything queued so far is committed (or has failed)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._buf.put((_FLUSH, done))
        done.wait(timeout)

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        group = _Group()
        while not group.stop:
            group = self._take_group()
            try:
                self._write(group)
            except Exception as e:  # a bug must not kill the only writer: fail this group
                log.exception("prediction store writer failed")
                self._fail(group, "database", e)
            for ev in group.flushes:
                ev.set()
        self._close_session()
        # Anything that slipped in after the stop sentinel would wait forever: fail it.
        while True:
            try:
                op = self._buf.get_nowait()
            except queue.Empty:
                return
            for one in self._expand(op):
                if one is None:
                    continue
                if one[0] is _FLUSH:
                    one[1].set()
                else:
                    one[-1].set_exception(ShuttingDown("prediction store is closed"))

    def _take_group(self) -> _Group:
        group = _Group()
        ops = self._expand(self._buf.get())
        # Group commit: whatever queued up while the last commit ran goes into this one.
        while len(ops) < self.group_max:
            try:
                ops += self._expand(self._buf.get_nowait())
            except queue.Empty:
                break
        for op in ops:
            if op is None:
                group.stop = True
            elif op[0] is _FLUSH:
                group.flushes.append(op[1])
            elif op[0] == "insert":
                group.inserts.append((op[1], op[2]))
            else:
                group.labels.append((op[1], op[2]))
        return group

    @staticmethod
    def _expand(item: Any) -> list[Any]:
        """A queue item -> its ops: writes come as lists (``submit_many``), a flush or the
        stop sentinel alone."""
        return list(item) if isinstance(item, list) else [item]

    def _write(self, group: _Group) -> None:
        if not group.futures:
            return
        for attempt in (1, 2):
            reused = self._session is not None
            session = self._session or self._reconnect()
            if session is None:
                self._fail(group, "connection", None)
                return
            try:
                session.commit([a for a, _ in group.inserts], [a for a, _ in group.labels])
            except Exception as e:
                reason = self._error_reason(e) or "database"
                sent = session.commit_sent
                self._close_session()
                if reason == "connection" and reused and not sent and attempt == 1:
                    log.info("store connection was stale (%s); retrying on a new one", e)
                    continue
                if reason == "database" and len(group.futures) > 1:
                    self._one_by_one(group)
                    return
                self._fail(group, reason, e)
                return
            # Only now, after COMMIT returned, may the requests behind these ops be answered.
            for f in group.futures:
                f.set_result(None)
            return

    def _one_by_one(self, group: _Group) -> None:
        """The database refused the group: commit each write alone so one bad row fails only
        its own request."""
        log.warning(
            "a group of %d writes was refused; committing them one by one", len(group.futures)
        )
        for args, f in group.inserts:
            self._write(_Group(inserts=[(args, f)]))
        for largs, f in group.labels:
            self._write(_Group(labels=[(largs, f)]))

    def _reconnect(self) -> WriteSession | None:
        now = time.monotonic()
        if now < self._retry_at:
            return None  # down, and not yet time to try again: fail at once
        try:
            self._session = self._connect()
        except Exception as e:
            if self._down_since is None:
                self._down_since = now
                log.warning("prediction store unreachable (%s); writes fail with "
                            "store_unavailable until it is back", e)  # fmt: skip
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, BACKOFF_MAX)
            return None
        if self._down_since is not None:
            log.warning("prediction store reachable again after %.1f s", now - self._down_since)
        self._down_since, self._retry_at, self._backoff = None, 0.0, BACKOFF_MIN
        return self._session

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception:
                log.debug("closing the store connection failed", exc_info=True)

    def _fail(self, group: _Group, reason: Reason, error: BaseException | None) -> None:
        futures = [f for f in group.futures if not f.done()]
        if not futures:
            return
        if error is not None:
            log.warning("writing %d prediction ops failed (%s): %s", len(futures), reason, error)
        self._on_error(reason, len(futures))
        detail = {
            "connection": "the database cannot be reached",
            "timeout": "the database did not answer in time",
        }.get(reason, "the database refused the write")
        for f in futures:
            f.set_exception(StoreUnavailable(f"prediction not stored: {detail}; retry"))
