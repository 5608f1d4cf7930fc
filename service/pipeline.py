"""The transport-neutral classify path shared by gRPC and HTTP.

``submit`` validates and queues a bitstream (errors raise at once); when the engine resolves
the prediction it goes straight to the store's group commit (still on the engine's thread, so
a batch's predictions share one commit). ``wait`` returns the ``Prediction`` only once it is
committed: an acknowledged id is never lost, even to a SIGKILL.

The pipeline also owns what both transports must do alike: field validation (labels, ids),
request counting (``fercomp_requests_total``: ``classify`` and ``classify_stream`` count every
outcome, ``refuse`` counts what a transport turns away before it gets here), and a stream's
in-flight window and compact framing (``classify_stream``). Transports only translate their
wire format to these calls and errors to their status codes.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from core import stream_framing
from core.bitstream import BitstreamError
from core.labels import EXPRESSIONS, check_label
from service.admission import InFlight
from service.engine import InferenceEngine
from service.errors import (
    BadRequest,
    Conflict,
    DeadlineExpired,
    InvalidField,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    error_code,
)
from service.futures import done_within
from service.metrics import Metrics
from service.store import PredictionStore
from service.types import ClassifyInput, Prediction, RequestMeta

log = logging.getLogger("fercomp.service.pipeline")


@dataclass(frozen=True)
class Pending:
    future: Future[Prediction]
    meta: RequestMeta
    started: float
    deadline: float
    stored: Future[None]  # resolves once the prediction is committed to the store
    wire_bytes: int  # what the client sent for this face (a compact record is < its container)
    release: Callable[[], None]  # counts it out of fercomp_requests_in_flight (once)


class Framing(enum.Enum):
    """What one stream message carries (docs/BITSTREAM.md, "Compact stream framing")."""

    CONTAINER = "container"  # a whole v1 container: one face
    STREAM_HEADER = "stream_header"  # the codec prefix for the compact faces that follow
    COMPACT_FACE = "compact_face"  # a face record: a container without the stream header


@dataclass(frozen=True)
class StreamMessage:
    framing: Framing
    data: bytes
    meta: RequestMeta  # ignored on a stream header; an empty request_id gets "<base>-<index>"


@dataclass(frozen=True)
class StreamResult:
    """The outcome of one face, in stream order: a prediction, or the error of that face."""

    index: int
    request_id: str
    prediction: Prediction | None = None
    error: BaseException | None = None


class _EndStream(NamedTuple):
    """Reader -> answerer: the client broke the stream protocol; answer what came before, then
    end the whole call with ``error``."""

    error: BaseException


MAX_ID_LENGTH = 128  # request/client/stream ids: the same bound on every transport
# A prediction finished at the edge of its deadline still gets this long to commit: failing
# it then would throw away work that is all but done.
COMMIT_GRACE_S = 1.0


def _result_budget(pending: Pending) -> float:
    return max(pending.deadline - time.monotonic(), 0.0) + 0.05


def _commit_budget(pending: Pending) -> float:
    return max(pending.deadline - time.monotonic(), 0.0) + COMMIT_GRACE_S


def _expired(pending: Pending) -> DeadlineExpired:
    pending.future.cancel()  # dropped by the worker if it has not started yet
    return DeadlineExpired(f"no result within {pending.deadline - pending.started:.3f}s")


def _not_committed() -> StoreUnavailable:
    return StoreUnavailable("prediction was not committed in time; retry")


class Pipeline:
    def __init__(
        self,
        engine: InferenceEngine[ClassifyInput, Any, Any, Prediction],
        store: PredictionStore,
        metrics: Metrics,
        max_payload_bytes: int,
        request_timeout: float,
        stream_window: int = 64,
    ) -> None:
        self.engine = engine
        self.store = store
        self.metrics = metrics
        self.max_payload_bytes = max_payload_bytes
        self.request_timeout = request_timeout
        self.stream_window = stream_window  # faces submitted and not yet answered, per stream
        self._label_lock = threading.Lock()  # check-then-set must not interleave
        self.in_flight = InFlight(on_change=metrics.requests_in_flight.set)

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex[:16]

    # -- counting -------------------------------------------------------------------------
    def refuse(self, transport: str, exc: BaseException) -> BaseException:
        """Count a request the transport turned away before it reached ``classify`` (wrong
        media type, body over the limit, too many streams); returns ``exc`` to raise."""
        self.metrics.count_request(transport, error_code(exc))
        return exc

    def _count(self, transport: str, exc: BaseException | None) -> None:
        self.metrics.count_request(transport, "ok" if exc is None else error_code(exc))

    @staticmethod
    def check_fields(meta: RequestMeta) -> None:
        """The one validation of classify fields for every transport (``InvalidField``)."""
        if meta.label is not None:
            try:
                check_label(meta.label)
            except ValueError as e:
                raise InvalidField(str(e)) from None
        for name in ("request_id", "client_id", "stream_id"):
            if len(getattr(meta, name)) > MAX_ID_LENGTH:
                raise InvalidField(f"{name} is longer than {MAX_ID_LENGTH} characters")

    # -- one face ---------------------------------------------------------------------------
    def submit(
        self,
        payload: bytes,
        meta: RequestMeta,
        timeout: float | None = None,
        wire_bytes: int | None = None,
    ) -> Pending:
        """Validate and queue; raises BitstreamError / ServiceError for this request only.
        ``wire_bytes``: what the client sent, when ``payload`` was rebuilt from less."""
        started = time.monotonic()
        if not meta.request_id:
            meta = replace(meta, request_id=self.new_request_id())
        wire = len(payload) if wire_bytes is None else wire_bytes
        self.metrics.received(meta.transport, wire)
        if len(payload) > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"bitstream of {len(payload)} bytes exceeds {self.max_payload_bytes}"
            )
        self.check_fields(meta)
        budget = self.request_timeout if timeout is None else min(timeout, self.request_timeout)
        deadline = started + max(budget, 0.0)
        future = self.engine.submit(ClassifyInput(payload, meta), deadline)
        release = self.in_flight.enter()  # admitted: the engine took it
        stored: Future[None] = Future()
        # Answered in ``wait``; this covers a face nobody waits for (its stream ended first).
        stored.add_done_callback(lambda _: release())
        future.add_done_callback(lambda f: self._persist(f, stored, wire))
        return Pending(future, meta, started, deadline, stored, wire, release)

    def _persist(self, future: Future[Prediction], stored: Future[None], wire: int) -> None:
        """Engine thread: hand a finished prediction to the store's next group commit."""
        if future.cancelled() or future.exception() is not None:
            stored.cancel()
            return
        self.store.add(replace(future.result(), received_bytes=wire), stored)

    def wait(self, pending: Pending) -> Prediction:
        """The prediction for ``pending``; raises its error, or DeadlineExpired."""
        try:
            return self._wait(pending)
        finally:
            pending.release()

    def _wait(self, pending: Pending) -> Prediction:
        try:
            pred = pending.future.result(timeout=_result_budget(pending))
        except FutureTimeout:
            raise _expired(pending) from None
        try:
            pending.stored.result(timeout=_commit_budget(pending))
        except FutureTimeout:
            raise _not_committed() from None
        return self._answered(pending, pred)

    async def _wait_async(self, pending: Pending) -> Prediction:
        """``_wait`` on an event loop: the same budgets and errors, no thread blocked. It
        waits for the commit alone (one wake-up of the loop per face, not two): ``stored``
        also ends, cancelled, when the prediction fails."""
        if not await done_within(pending.stored, _result_budget(pending)):
            if not pending.future.done():
                raise _expired(pending)
            if not await done_within(pending.stored, _commit_budget(pending)):
                raise _not_committed()
        pred = pending.future.result()  # its prediction, or its error raised
        pending.stored.result()  # committed, or the store's error raised
        return self._answered(pending, pred)

    def _answered(self, pending: Pending, pred: Prediction) -> Prediction:
        pred = replace(
            pred,
            received_bytes=pending.wire_bytes,
            total_ms=(time.monotonic() - pending.started) * 1e3,
        )
        self.metrics.observe_prediction(pred)
        return pred

    def classify(
        self, payload: bytes, meta: RequestMeta, timeout: float | None = None
    ) -> Prediction:
        """One face, counted under ``meta.transport`` whatever the outcome."""
        try:
            pred = self.wait(self.submit(payload, meta, timeout))
        except Exception as e:
            self._count(meta.transport, e)
            raise
        self._count(meta.transport, None)
        return pred

    async def classify_async(self, payload: bytes, meta: RequestMeta) -> Prediction:
        """``classify`` for an event loop (REST): awaits the engine and the store's commit
        where ``classify`` blocks a thread on them, so a request holds no worker thread."""
        try:
            pending = self.submit(payload, meta)
            try:
                pred = await self._wait_async(pending)
            finally:
                pending.release()
        except Exception as e:
            self._count(meta.transport, e)
            raise
        self._count(meta.transport, None)
        return pred

    # -- streams ----------------------------------------------------------------------------
    def classify_stream(
        self,
        messages: Iterator[StreamMessage],
        transport: str,
        base_id: str = "",
        time_remaining: Callable[[], float | None] = lambda: None,
    ) -> Iterator[StreamResult]:
        """Results for the faces of ``messages``, strictly in order, each counted.

        A reader thread submits faces as they arrive, so they batch with each other (and with
        other clients' requests), at most ``stream_window`` ahead of the answers: a client that
        sends faster than it reads is held back (backpressure), not buffered. A failed face
        gives a result with ``error`` and the stream goes on; a broken stream protocol (a
        compact face before any stream header, an invalid stream header) raises its error
        after the faces before it are answered.
        """
        window: queue.Queue[Any] = queue.Queue(maxsize=self.stream_window)
        stop = threading.Event()
        reader = threading.Thread(
            target=self._read_stream,
            args=(messages, window, stop, base_id or self.new_request_id(), time_remaining),
            name="fercomp-stream-reader",
            daemon=True,
        )
        reader.start()
        try:
            while (entry := window.get()) is not None:
                if isinstance(entry, _EndStream):
                    self._count(transport, entry.error)
                    raise entry.error
                index, rid, pending = entry
                result = self._answer(transport, index, rid, pending)
                yield result
        finally:
            stop.set()

    def _answer(
        self, transport: str, index: int, rid: str, pending: Pending | BaseException
    ) -> StreamResult:
        try:
            if isinstance(pending, BaseException):
                raise pending
            pred = self.wait(pending)
        except Exception as e:
            self._count(transport, e)
            return StreamResult(index, rid, error=e)
        self._count(transport, None)
        return StreamResult(index, rid, prediction=pred)

    def _read_stream(
        self,
        messages: Iterator[StreamMessage],
        window: queue.Queue[Any],
        stop: threading.Event,
        base: str,
        time_remaining: Callable[[], float | None],
    ) -> None:
        def put(entry: Any) -> bool:
            while not stop.is_set():  # bounded window = backpressure on the client
                try:
                    window.put(entry, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        header: bytes | None = None  # the current stream header, once one has arrived
        index = 0
        try:
            for msg in messages:
                if msg.framing is Framing.STREAM_HEADER:
                    self.metrics.received(msg.meta.transport, len(msg.data))
                    try:
                        stream_framing.parse_stream_header(msg.data)
                    except BitstreamError as e:
                        put(_EndStream(e))
                        return
                    header = msg.data
                    continue
                payload = msg.data
                if msg.framing is Framing.COMPACT_FACE:
                    if header is None:
                        put(_EndStream(BadRequest(
                            f"face {index}: a compact face needs a stream_header message "
                            "before it (docs/BITSTREAM.md, compact stream framing)"
                        )))  # fmt: skip
                        return
                    payload = stream_framing.join(header, msg.data)
                meta = msg.meta
                if not meta.request_id:
                    meta = replace(meta, request_id=f"{base}-{index}")
                pending: Pending | BaseException
                try:
                    pending = self.submit(payload, meta, time_remaining(), len(msg.data))
                except BitstreamError as e:
                    compact = msg.framing is Framing.COMPACT_FACE
                    pending = stream_framing.face_error(e) if compact else e
                except Exception as e:
                    pending = e
                if not put((index, meta.request_id, pending)):
                    return
                index += 1
        except Exception as e:  # client went away or sent garbage: end the stream
            log.info("stream reader ended: %s", type(e).__name__)
        finally:
            put(None)

    def label(self, pred_id: str, label: int) -> dict[str, Any]:
        """Ground truth for a stored prediction; counts toward accuracy metrics once."""
        try:
            check_label(label)
        except ValueError as e:
            raise BadRequest(str(e)) from None
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
