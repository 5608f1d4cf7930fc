"""POST /v1/classify: one raw bitstream body -> the same JSON fields as the gRPC response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from core.labels import EXPRESSIONS
from service.convert import to_result
from service.errors import PayloadTooLarge, UnsupportedMediaType
from service.http.deps import State
from service.http.errors import BITSTREAM_CODES, VALIDATION, error_responses
from service.logs import request_id_var
from service.pipeline import MAX_ID_LENGTH
from service.schemas import ClassifyResult
from service.types import RequestMeta

router = APIRouter(prefix="/v1", tags=["classify"])
CLASSIFY_PATH = f"{router.prefix}/classify"  # streams its body: no JSON body limit
MEDIA_TYPE = "application/octet-stream"
# The classify fields' ranges are the pipeline's to check (``Pipeline.check_fields``), so that
# REST and gRPC refuse and count the same values: FastAPI checks only their types, and the
# document states the pipeline's bounds (``json_schema_extra``: described, not enforced here).
_ID = {"maxLength": MAX_ID_LENGTH}
_LABEL = {"minimum": 0, "maximum": len(EXPRESSIONS) - 1}
RESPONSES = error_responses(
    *BITSTREAM_CODES,
    *VALIDATION,
    "unknown_codec",
    "payload_too_large",
    "unsupported_media_type",
    "resource_exhausted",
    "unavailable",
    "store_unavailable",
    "deadline_exceeded",
    notes={
        400: "The body is not a bitstream this server can decode. Its schema is any bytes "
        "(no schema can say which bytes are a bitstream), so a request the schema allows can "
        "get this.",
        413: "The body is over `max_payload_bytes` (1 MiB by default).",
        415: f"A `Content-Type` other than `{MEDIA_TYPE}` (none is taken as octets).",
        422: "A field out of range (ids, label), or a well-formed bitstream of a codec this "
        "server has not loaded (`unknown_codec`; the detail lists the loaded ones): like the "
        "400s, a request the schema allows can get this.",
        429: "The queue is full.",
        503: "Shutting down, or the prediction was not committed to the store (retry).",
        504: "The request waited longer than `request_timeout`.",
    },
)


@router.post(
    "/classify",
    responses=RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One bitstream (docs/BITSTREAM.md), as raw bytes.",
            "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def classify(
    request: Request,
    state: State,
    request_id: Annotated[str | None, Query(json_schema_extra=_ID)] = None,
    client_id: Annotated[str | None, Query(json_schema_extra=_ID)] = None,
    stream_id: Annotated[str | None, Query(json_schema_extra=_ID)] = None,
    label: Annotated[int | None, Query(json_schema_extra=_LABEL)] = None,
    x_client_id: Annotated[str | None, Header(json_schema_extra=_ID)] = None,
    # Described by the request body's media type (OpenAPI ignores a Content-Type parameter).
    content_type: Annotated[str | None, Header(max_length=256, include_in_schema=False)] = None,
) -> ClassifyResult:
    pipeline = state.pipeline
    # A body without a type may be taken as octets (RFC 9110 8.3); any other declared type
    # (a form, JSON, text) is a client mistake that would otherwise fail as a bad bitstream.
    if content_type is not None and content_type.split(";")[0].strip().lower() != MEDIA_TYPE:
        raise pipeline.refuse(
            "http",
            UnsupportedMediaType(f"Content-Type must be {MEDIA_TYPE}, got {content_type!r}"),
        )
    limit = state.settings.max_payload_bytes
    body = bytearray()
    async for chunk in request.stream():  # never buffer more than the limit
        body += chunk
        if len(body) > limit:
            raise pipeline.refuse("http", PayloadTooLarge(f"bitstream exceeds {limit} bytes"))
    meta = RequestMeta(
        request_id=request_id or request_id_var.get(),
        client_id=client_id or x_client_id or "",
        stream_id=stream_id or "",
        label=label,
        transport="http",
    )
    # Awaited on the event loop, no worker thread per request (a flood of classify requests
    # then never takes the threads the sync routes run on: /metrics, models, admin swaps,
    # predictions). The pipeline counts the outcome, success or error.
    pred = await pipeline.classify_async(bytes(body), meta)
    return to_result(pred)
