"""Inference engine: a bounded queue, one worker thread doing dynamic batching, futures.

Generic over a ``ModelAPI`` (defined here; the FER one is ``service.model_api``): callers
``submit`` a request and get a ``concurrent.futures.Future``; the worker collects batches with
``collect_batch`` (a pure function, see ``service.batching``), drops items whose deadline has
passed, runs one ``predict`` per batch and resolves each future. One worker is enough: the
models use all cores through torch's intra-op threads, and a single consumer makes batches as
large as possible.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from service.batching import collect_batch
from service.errors import DeadlineExpired, QueueFull, ShuttingDown

log = logging.getLogger("fercomp.service.engine")

Req = TypeVar("Req", contravariant=True)
Item = TypeVar("Item")
Out = TypeVar("Out")
Resp = TypeVar("Resp", covariant=True)


@dataclass(frozen=True)
class Timing:
    queue_s: float  # submit -> batch start
    batch_size: int


class ModelAPI(Protocol, Generic[Req, Item, Out, Resp]):
    """The model contract the engine runs (LitServe-style); four calls, so batching and
    queueing code never touches codecs or tensors.

    * ``decode_request(request) -> item`` on the caller's thread: validate input (raise to
      refuse it) and capture whatever the request must keep using.
    * ``predict(items) -> outputs`` on the worker thread, one batch at a time; an output may be
      an exception, which fails only that item. Grouping inside a batch is ``predict``'s job.
    * ``encode_response(output, item, timing) -> response``: a transport-neutral result.
    """

    def setup(self) -> None: ...
    def decode_request(self, request: Req) -> Item: ...
    def predict(self, items: list[Item]) -> list[Out | BaseException]: ...
    def encode_response(self, output: Out, item: Item, timing: Timing) -> Resp: ...


class EngineObserver(Protocol):
    def on_batch(self, size: int) -> None: ...
    def on_queue_depth(self, depth: int) -> None: ...


@dataclass(eq=False)
class _Job(Generic[Item, Resp]):
    item: Item
    future: Future[Resp]
    enqueued: float
    deadline: float | None = None


_STOP: Any = object()  # sentinel: the worker finishes its batch and exits


class InferenceEngine(Generic[Req, Item, Out, Resp]):
    def __init__(
        self,
        api: ModelAPI[Req, Item, Out, Resp],
        max_batch_size: int = 32,
        max_queue_delay: float = 0.005,
        max_queue_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
        observer: EngineObserver | None = None,
        results_scope: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        """``results_scope``: a context each batch's futures are resolved in (the server's
        store holds the writes their callbacks make until its end: one commit per batch)."""
        self.api = api
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay
        self.clock = clock
        self.observer = observer
        self.results_scope = results_scope
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue_size)
        self._accepting = False
        self._thread: threading.Thread | None = None
        self._last_batch = max_batch_size  # until a batch says otherwise, wait as before

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name="fercomp-engine", daemon=True)
        self._thread.start()

    def submit(self, request: Req, deadline: float | None = None) -> Future[Resp]:
        """Validate ``request`` (raises at once on bad input) and queue it.

        Raises ``QueueFull`` when the queue is at capacity and ``ShuttingDown`` after ``stop``.
        """
        if not self._accepting:
            raise ShuttingDown("server is shutting down")
        item = self.api.decode_request(request)
        job: _Job[Item, Resp] = _Job(item, Future(), self.clock(), deadline)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(
                f"inference queue is full ({self._queue.maxsize} waiting); retry later"
            ) from None
        self._observe_depth()
        return job.future

    def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting; with ``drain`` finish everything queued, else fail it."""
        self._accepting = False
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if not drain:
            self._fail_queued(ShuttingDown("server stopped before this request ran"))
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            self._fail_queued(ShuttingDown("server stopped before this request ran"))
            self._queue.put(_STOP)
        thread.join(timeout)
        # A submit racing with stop may have queued behind the sentinel.
        self._fail_queued(ShuttingDown("server stopped before this request ran"))

    # -- worker ---------------------------------------------------------------------------
    def _get(self, timeout: float | None) -> Any:
        return self._queue.get(timeout=timeout)

    def _run(self) -> None:
        while True:
            batch = collect_batch(
                self._get,
                self.max_batch_size,
                self.max_queue_delay,
                self.clock,
                is_last=lambda j: j is _STOP,
                # Callers answered by the last batch come back (a closed loop), and so do
                # those already queued: wait for both. The queued ones alone would lock eight
                # callers into two alternating batches of four, each costing per face what a
                # batch of eight does not.
                expected=self._last_batch + self._queue.qsize(),
            )
            stop = bool(batch) and batch[-1] is _STOP
            jobs = [j for j in batch if j is not _STOP]
            self._observe_depth()
            if jobs:
                self._last_batch = len(jobs)
                try:
                    self._process(jobs)
                except Exception:  # never let one batch kill the worker
                    log.exception("batch of %d failed", len(jobs))
            if stop:
                return

    def _process(self, jobs: list[_Job[Item, Resp]]) -> None:
        start = self.clock()
        live = []
        for j in jobs:
            if not j.future.set_running_or_notify_cancel():
                continue  # the caller gave up (cancelled) before we got to it
            if j.deadline is not None and start > j.deadline:
                j.future.set_exception(
                    DeadlineExpired(f"deadline passed after {start - j.enqueued:.3f}s in queue")
                )
                continue
            live.append(j)
        if not live:
            return
        if self.observer is not None:
            self.observer.on_batch(len(live))
        try:
            outputs = self.api.predict([j.item for j in live])
        except Exception as e:
            for j in live:
                j.future.set_exception(e)
            return
        with self.results_scope():
            for j, out in zip(live, outputs, strict=True):
                if isinstance(out, BaseException):
                    j.future.set_exception(out)
                    continue
                try:
                    timing = Timing(queue_s=start - j.enqueued, batch_size=len(live))
                    j.future.set_result(self.api.encode_response(out, j.item, timing))
                except Exception as e:
                    j.future.set_exception(e)

    def _fail_queued(self, exc: Exception) -> None:
        while True:
            try:
                j = self._queue.get_nowait()
            except queue.Empty:
                break
            if j is not _STOP and j.future.set_running_or_notify_cancel():
                j.future.set_exception(exc)
        self._observe_depth()

    def _observe_depth(self) -> None:
        if self.observer is not None:
            self.observer.on_queue_depth(self._queue.qsize())
