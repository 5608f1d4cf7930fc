"""Admission control for long-lived calls: a fixed number of slots, refused at once when full.

A gRPC ``ClassifyStream`` holds a handler thread (and its reader thread) for as long as the
client keeps it open, so without a cap enough idle streams take every handler thread and unary
calls, ``ListModels`` and health checks queue behind them. ``max_streams`` is kept below
``grpc_workers`` (settings refuse otherwise): the threads above the cap are always there for
short calls, and a stream past the cap costs one of them only for the microseconds it takes
to refuse it with RESOURCE_EXHAUSTED, instead of waiting for a thread that may never free up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
