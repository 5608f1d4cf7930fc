"""Admission control: fixed budgets, refused at once when full, never queued without bound.

Two budgets on the gRPC side:

* ``Admission`` (``max_streams``): a ``ClassifyStream`` holds a handler thread (and its reader
  thread) for as long as the client keeps it open, so without a cap enough idle streams take
  every handler thread and unary calls queue behind them. ``max_streams`` is kept below
  ``grpc_workers`` (settings refuse otherwise): the threads above the cap are always there for
  short calls, and a stream past the cap costs one of them only for the microseconds it takes
  to refuse it with RESOURCE_EXHAUSTED, instead of waiting for a thread that may never free up.
* ``RpcBudget`` (``grpc_max_concurrent_rpcs``): the handler pool of the ``FerService`` calls.
  A unary ``Classify`` holds its thread while it waits for the engine, so under a flood every
  thread is taken and further calls wait in the pool's queue. The budget counts the calls
  handed to the pool (running or waiting for a thread) until their handler returns; past it a
  call is refused with RESOURCE_EXHAUSTED before it reaches the pool. The check runs where gRPC
  picks a call's handler (the interceptor, on gRPC's polling thread), and the refusal itself
  runs on a small pool of its own, so refusing never waits behind the work it refuses.

Health checks and reflection are in neither budget: they run on pools of their own
(``service.grpc_server``), so a load balancer's probe answers however full the server is. gRPC's
own ``maximum_concurrent_rpcs`` is not used, because it counts every call, health included,
and refuses a health check of a busy server as readily as a classify call.

``InFlight`` is no budget but the count behind them all: classify requests (one per face, every
transport) the engine accepted and that are not yet answered. It is the load signal an
autoscaler reads (``fercomp_requests_in_flight``, docs/DEPLOY.md "Kubernetes").
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from service.errors import StreamLimit


class Admission:
    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()
        self._on_change = on_change or (lambda n: None)

    @property
    def open(self) -> int:
        return self._open

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the ``with`` body; raises ``StreamLimit`` when all are taken."""
        with self._lock:
            if self._open >= self.limit:
                raise StreamLimit(f"{self.limit} streams already open (max_streams); retry later")
            self._open += 1
            self._on_change(self._open)
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                self._on_change(self._open)


class InFlight:
    """Requests admitted and not yet answered. ``enter`` counts one in and returns its release,
    which counts it out exactly once however many times (and from whichever thread) it is
    called: a request is released by its answer, or by the end of its work when nobody waits
    for the answer any more (a stream closed early), whichever comes first."""

    def __init__(self, on_change: Callable[[int], None] | None = None) -> None:
        self._count = 0
        self._lock = threading.Lock()
        self._on_change = on_change or (lambda n: None)

    @property
    def count(self) -> int:
        return self._count

    def enter(self) -> Callable[[], None]:
        with self._lock:
            self._count += 1
            self._on_change(self._count)
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._count -= 1
                self._on_change(self._count)

        return release


class RpcBudget(ThreadPoolExecutor):
    """A handler pool that counts what it was handed and has not finished: calls running on
    one of its ``workers`` threads plus calls waiting for one. ``full()`` once that reaches
    ``limit`` (>= ``workers``; the excess is how many calls may wait for a thread).

    The count is kept by ``submit`` and the future's completion, i.e. by the pool itself, so a
    call that ends before its handler ever runs (the client cancelled while it waited) still
    gives its slot back.
    """

    def __init__(self, workers: int, limit: int, thread_name_prefix: str = "") -> None:
        if limit < workers:
            raise ValueError(f"limit ({limit}) must be at least workers ({workers})")
        super().__init__(max_workers=workers, thread_name_prefix=thread_name_prefix)
        self.limit = limit
        self._in_flight = 0
        self._count_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def full(self) -> bool:
        return self._in_flight >= self.limit

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._count_lock:
            self._in_flight += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:  # shut down: nothing will run, nothing to count
            self._release()
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _: object = None) -> None:
        with self._count_lock:
            self._in_flight -= 1
