"""``Prediction`` -> protobuf, and the REST classify result (the same fields as gRPC)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format

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

    Through the proto on purpose, so REST shows the same values as gRPC (the enum's name,
    probabilities rounded to float32)."""
    out: dict[str, Any] = json_format.MessageToDict(
        to_proto(p), preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    out.pop("error", None)
    return ClassifyResult.model_validate(out)


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
