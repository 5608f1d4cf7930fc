"""What the SDK returns: predictions, per-item errors, and its one exception type."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import grpc

from core.labels import EXPRESSIONS
from proto.fercomp.v1 import fercomp_pb2

# The server's error code and request id come in trailing metadata (trailing so that sending
# them never commits the call, which would stop gRPC from retrying UNAVAILABLE).
from proto.wire import ERROR_CODE_KEY, REQUEST_ID_KEY


class FerClientError(Exception):
    """A call failed. ``status`` is the gRPC status (None for client-side failures) and
    ``code`` a short machine-readable string (e.g. "unavailable", "bad_magic");
    ``request_id`` the server's id of the failed call, to find it in the server's logs."""

    def __init__(
        self,
        message: str,
        status: grpc.StatusCode | None = None,
        code: str = "",
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or (status.name.lower() if status is not None else "client_error")
        self.request_id = request_id

    @classmethod
    def from_rpc(cls, err: grpc.RpcError, target: str) -> FerClientError:
        status = err.code() if isinstance(err, grpc.Call) else None
        details = (err.details() if isinstance(err, grpc.Call) else str(err)) or ""
        details = details.strip().splitlines()[0] if details.strip() else ""
        trailers = dict(err.trailing_metadata() or ()) if isinstance(err, grpc.Call) else {}
        code = str(trailers.get(ERROR_CODE_KEY, ""))
        request_id = str(trailers.get(REQUEST_ID_KEY, ""))
        if status == grpc.StatusCode.UNAVAILABLE:
            msg = f"server {target} unavailable: {details or 'connection failed'}"
        elif status == grpc.StatusCode.DEADLINE_EXCEEDED:
            msg = f"server {target} did not answer in time"
        else:
            name = status.name if status is not None else "ERROR"
            msg = f"server {target}: {name}: {details}" if details else f"server {target}: {name}"
        return cls(msg, status, code, request_id)


@dataclass(frozen=True)
class FaceInfo:
    """Client-side face/encoding facts that travel with a prediction."""

    bytes_sent: int = 0
    detected: bool | None = None  # None: detection not requested
    fallback: bool = False  # detection found nothing, centre crop sent
    box: tuple[int, int, int, int] | None = None
    codec_over_budget: bool = False  # no operating point fitted the byte target
    target_bytes: int | None = None  # the byte target rate control had for this face
    mirrored: bool = False  # canonical orientation: the client sent the image's mirror


@dataclass(frozen=True)
class Prediction:
    expression: str
    confidence: float
    probabilities: dict[str, float]
    codec_version: str
    codec_id: str
    classifier_version: str
    bytes_sent: int
    request_id: str
    index: int = 0  # position in classify_many / stream input
    label: int | None = None
    decode_ms: float = 0.0  # server timings
    inference_ms: float = 0.0
    queue_ms: float = 0.0
    latency_ms: float | None = None  # client round trip (unary calls only)
    face: FaceInfo = field(default_factory=FaceInfo)

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else EXPRESSIONS[self.label] == self.expression

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "correct": self.correct}

    @classmethod
    def from_response(
        cls,
        r: fercomp_pb2.ClassifyResponse,
        face: FaceInfo,
        index: int,
        request_id: str = "",
        label: int | None = None,
        latency_ms: float | None = None,
    ) -> Prediction:
        probs = {name: float(p) for name, p in zip(EXPRESSIONS, r.probabilities, strict=False)}
        idx = int(r.expression)
        expression = r.expression_name or (EXPRESSIONS[idx] if idx < len(EXPRESSIONS) else "")
        return cls(
            expression=expression,
            confidence=probs.get(expression, 0.0),
            probabilities=probs,
            codec_version=r.codec_version,
            codec_id=r.codec_id,
            classifier_version=r.classifier_version,
            bytes_sent=face.bytes_sent,
            request_id=r.request_id or request_id,
            index=index,
            label=label,
            decode_ms=r.decode_ms,
            inference_ms=r.inference_ms,
            queue_ms=r.queue_ms,
            latency_ms=latency_ms,
            face=face,
        )


@dataclass(frozen=True)
class ItemErrorResult:
    """One item failed (bad bitstream, unreadable image); the others went on."""

    index: int
    code: str
    message: str
    request_id: str = ""
    bytes_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def result_row(result: Prediction | ItemErrorResult, **context: Any) -> dict[str, Any]:
    """The one JSON form of a result, for every output that lists results (``fercomp classify
    --json`` rows, ``fercomp stream --json`` lines): ``context`` first (e.g. ``path``,
    ``frame``), then the prediction's fields, or ``{"error": {...}}`` for a failed item."""
    if isinstance(result, ItemErrorResult):
        return {**context, "error": result.to_dict()}
    return {**context, **result.to_dict()}
