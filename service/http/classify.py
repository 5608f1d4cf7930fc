"""POST /v1/classify: one raw bitstream body -> the same JSON fields as the gRPC response."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request

from service.convert import to_result
from service.errors import PayloadTooLarge, UnsupportedMediaType, error_code
from service.http.deps import State
from service.logs import request_id_var
from service.schemas import ClassifyResult
from service.types import RequestMeta

router = APIRouter(prefix="/v1", tags=["classify"])
CLASSIFY_PATH = f"{router.prefix}/classify"  # streams its body: no JSON body limit
MEDIA_TYPE = "application/octet-stream"


@router.post(
    "/classify",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def classify(
    request: Request,
    state: State,
    request_id: Annotated[str | None, Query(max_length=128)] = None,
    client_id: Annotated[str | None, Query(max_length=128)] = None,
    stream_id: Annotated[str | None, Query(max_length=128)] = None,
    label: Annotated[int | None, Query(ge=0, le=6)] = None,
    x_client_id: Annotated[str | None, Header(max_length=128)] = None,
    content_type: Annotated[str | None, Header(max_length=256)] = None,
) -> ClassifyResult:
    # A body without a type may be taken as octets (RFC 9110 8.3); any other declared type
    # (a form, JSON, text) is a client mistake that would otherwise fail as a bad bitstream.
    if content_type is not None and content_type.split(";")[0].strip().lower() != MEDIA_TYPE:
        state.metrics.count_request("http", UnsupportedMediaType.code)
        raise UnsupportedMediaType(f"Content-Type must be {MEDIA_TYPE}, got {content_type!r}")
    limit = state.settings.max_payload_bytes
    body = bytearray()
    async for chunk in request.stream():  # never buffer more than the limit
        body += chunk
        if len(body) > limit:
            state.metrics.count_request("http", PayloadTooLarge.code)
            raise PayloadTooLarge(f"bitstream exceeds {limit} bytes")
    meta = RequestMeta(
        request_id=request_id or request_id_var.get(),
        client_id=client_id or x_client_id or "",
        stream_id=stream_id or "",
        label=label,
        transport="http",
    )
    try:
        # The pipeline blocks on a future: run it in a worker thread, not on the event loop.
        pred = await anyio.to_thread.run_sync(state.pipeline.classify, bytes(body), meta)
    except Exception as e:
        state.metrics.count_request("http", error_code(e))
        raise
    state.metrics.count_request("http", "ok")
    return to_result(pred)
