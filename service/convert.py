"""``Prediction`` -> protobuf, and the REST classify result (the same fields as gRPC)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from proto.fercomp.v1 import fercomp_pb2
from service.errors import error_code
from service.schemas import ClassifyResult
from service.types import ModelDescription, Prediction


def to_proto(p: Prediction, index: int = 0) -> fercomp_pb2.ClassifyResponse:
    return fercomp_pb2.ClassifyResponse(
        request_id=p.request_id,
        expression=p.expression,  # type: ignore[arg-type]  # enum values are 0..6 ints
        expression_name=p.expression_name,
        probabilities=p.probabilities,
        codec_version=p.codec_version,
        codec_id=p.codec_id,
        classifier_version=p.classifier_version,
        decode_ms=p.decode_ms,
        inference_ms=p.inference_ms,
        queue_ms=p.queue_ms,
        received_bytes=p.received_bytes,
        index=index,
        prediction_id=p.id,
    )


def error_item(index: int, request_id: str, exc: BaseException) -> fercomp_pb2.ClassifyResponse:
    """A stream item that failed on its own; the stream goes on."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if error_code(exc) == "internal":
        message = "internal error"
    return fercomp_pb2.ClassifyResponse(
        request_id=request_id,
        index=index,
        error=fercomp_pb2.ItemError(code=error_code(exc), message=message),
    )


def to_result(p: Prediction) -> ClassifyResult:
    """What POST /v1/classify returns: the gRPC response's fields, by their proto names.

    Read off the proto on purpose, so REST shows the same values as gRPC (the enum's name,
    probabilities rounded to float32 and printed as protobuf's JSON prints a float). Field by
    field rather than through ``json_format.MessageToDict``, whose generic walk took 2.5x as
    long, on the event loop that runs all of REST's Python; ``tests/service/test_convert.py``
    holds the two equal, to the bytes sent."""
    m = to_proto(p)
    return ClassifyResult(
        request_id=m.request_id,
        expression=fercomp_pb2.Expression.Name(m.expression),
        expression_name=m.expression_name,
        probabilities=[float32_json(v) for v in m.probabilities],
        codec_version=m.codec_version,
        codec_id=m.codec_id,
        classifier_version=m.classifier_version,
        decode_ms=m.decode_ms,
        inference_ms=m.inference_ms,
        queue_ms=m.queue_ms,
        received_bytes=m.received_bytes,
        index=m.index,
        prediction_id=m.prediction_id,
    )


def float32_json(value: float) -> float:
    """A float32 field as protobuf's JSON writes it: the shortest decimal that reads back as
    the same float32 (0.1, not 0.10000000149011612)."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="-"))


def model_infos(models: Iterable[tuple[ModelDescription, bool]]) -> list[fercomp_pb2.ModelInfo]:
    return [
        fercomp_pb2.ModelInfo(
            name=m.name,
            version=m.version,
            kind=m.kind,
            codec_id=m.codec_id or "",
            active=active,
            sha256=m.sha256,
            paired_classifier=m.paired_classifier or "",
        )
        for m, active in models
    ]
