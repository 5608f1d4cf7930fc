"""POST /v1/classify: one raw bitstream body -> the same JSON fields as the gRPC response."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Request

from service.convert import to_result
from service.errors import PayloadTooLarge, UnsupportedMediaType
from service.http.deps import State
from service.logs import request_id_var
from service.schemas import ClassifyResult
from service.types import RequestMeta

router = APIRouter(prefix="/v1", tags=["classify"])
CLASSIFY_PATH = f"{router.prefix}/classify"  # streams its body: no JSON body limit
MEDIA_TYPE = "application/octet-stream"
# Worker threads waiting on the engine at once (anyio's default total). A limiter of their own
# (``classify_limiter``, one per app, as anyio's default one is per event loop): a flood of
# classify requests then never takes the threads the sync routes run on (/metrics, models,
# admin swap/rollback, predictions). The health routes are async and need no thread at all.
CLASSIFY_THREADS = 40


def classify_limiter() -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(CLASSIFY_THREADS)


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
    # Ranges (ids <= 128 characters, label 0..6) are the pipeline's to check, so that REST and
    # gRPC refuse and count the same values; only the types are FastAPI's.
    request_id: str | None = None,
    client_id: str | None = None,
    stream_id: str | None = None,
    label: int | None = None,
    x_client_id: Annotated[str | None, Header()] = None,
    content_type: Annotated[str | None, Header(max_length=256)] = None,
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
    # The pipeline blocks on a future: run it in a worker thread, not on the event loop. It
    # counts the outcome, success or error.
    limiter: anyio.CapacityLimiter = request.app.state.classify_limiter
    pred = await anyio.to_thread.run_sync(pipeline.classify, bytes(body), meta, limiter=limiter)
    return to_result(pred)
