"""The transport-neutral classify path shared by gRPC and HTTP.

``submit`` validates and queues a bitstream (errors raise at once); when the engine resolves
the prediction it goes straight to the store's group commit (still on the engine's thread, so
a batch's predictions share one commit). ``wait`` returns the ``Prediction`` only once it is
committed: an acknowledged id is never lost, even to a SIGKILL. Transports only translate
their wire format to these calls and errors to their status codes.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any

from core.labels import EXPRESSIONS
from service.engine import InferenceEngine
from service.errors import (
    BadRequest,
    Conflict,
    DeadlineExpired,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
)
from service.metrics import Metrics
from service.store import PredictionStore
from service.types import ClassifyInput, Prediction, RequestMeta


@dataclass(frozen=True)
class Pending:
    future: Future[Prediction]
    meta: RequestMeta
    started: float
    deadline: float
    stored: Future[None]  # resolves once the prediction is committed to the store


MAX_ID_LENGTH = 128  # request/client/stream ids: the same bound on every transport
# A prediction finished at the edge of its deadline still gets this long to commit: failing
# it then would throw away work that is all but done.
COMMIT_GRACE_S = 1.0


class Pipeline:
    def __init__(
        self,
        engine: InferenceEngine[ClassifyInput, Any, Any, Prediction],
        store: PredictionStore,
        metrics: Metrics,
        max_payload_bytes: int,
        request_timeout: float,
    ) -> None:
        self.engine = engine
        self.store = store
        self.metrics = metrics
        self.max_payload_bytes = max_payload_bytes
        self.request_timeout = request_timeout
        self._label_lock = threading.Lock()  # check-then-set must not interleave

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex[:16]

    def submit(self, payload: bytes, meta: RequestMeta, timeout: float | None = None) -> Pending:
        """Validate and queue; raises BitstreamError / ServiceError for this request only."""
        started = time.monotonic()
        if not meta.request_id:
            meta = replace(meta, request_id=self.new_request_id())
        self.metrics.received(meta.transport, len(payload))
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"bitstream of {len(payload)} bytes exceeds {self.max_payload_bytes}"
            )
        if meta.label is not None and not 0 <= meta.label < len(EXPRESSIONS):
            raise BadRequest(f"label {meta.label} outside 0..{len(EXPRESSIONS) - 1}")
        for name in ("request_id", "client_id", "stream_id"):
            if len(getattr(meta, name)) > MAX_ID_LENGTH:
                raise BadRequest(f"{name} is longer than {MAX_ID_LENGTH} characters")
        budget = self.request_timeout if timeout is None else min(timeout, self.request_timeout)
        deadline = started + max(budget, 0.0)
        future = self.engine.submit(ClassifyInput(payload, meta), deadline)
        stored: Future[None] = Future()
        future.add_done_callback(lambda f: self._persist(f, stored))
        return Pending(future, meta, started, deadline, stored)

    def _persist(self, future: Future[Prediction], stored: Future[None]) -> None:
        """Engine thread: hand a finished prediction to the store's next group commit."""
        if future.cancelled() or future.exception() is not None:
            stored.cancel()
            return
        self.store.add(future.result(), stored)

    def wait(self, pending: Pending) -> Prediction:
        """The prediction for ``pending``; raises its error, or DeadlineExpired."""
        remaining = pending.deadline - time.monotonic()
        try:
            pred = pending.future.result(timeout=max(remaining, 0.0) + 0.05)
        except FutureTimeout:
            pending.future.cancel()  # dropped by the worker if it has not started yet
            raise DeadlineExpired(
                f"no result within {pending.deadline - pending.started:.3f}s"
            ) from None
        try:
            remaining = pending.deadline - time.monotonic()
            pending.stored.result(timeout=max(remaining, 0.0) + COMMIT_GRACE_S)
        except FutureTimeout:
            raise StoreUnavailable("prediction was not committed in time; retry") from None
        pred = replace(pred, total_ms=(time.monotonic() - pending.started) * 1e3)
        self.metrics.observe_prediction(pred)
        return pred

    def classify(
        self, payload: bytes, meta: RequestMeta, timeout: float | None = None
    ) -> Prediction:
        return self.wait(self.submit(payload, meta, timeout))

    def label(self, pred_id: str, label: int) -> dict[str, Any]:
        """Ground truth for a stored prediction; counts toward accuracy metrics once."""
        if not 0 <= label < len(EXPRESSIONS):
            raise BadRequest(f"label {label} outside 0..{len(EXPRESSIONS) - 1}")
        with self._label_lock:
            before = self.store.get(pred_id)
            if before is None:
                raise NotFound(f"no prediction {pred_id!r}")
            if before["label"] is not None:
                raise Conflict(f"prediction {pred_id} is already labelled {before['label']}")
            self.store.set_label(pred_id, label)
        predicted = EXPRESSIONS.index(before["expression"])
        self.metrics.observe_label(before["classifier_version"], predicted, label)
        return before | {"label": label}
