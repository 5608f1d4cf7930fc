"""Prometheus exposition (text format) of the server's own registry."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.http.deps import State

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "docs/METRICS.md"}},
)
def metrics(state: State) -> Response:
    state.metrics.on_queue_depth(state.engine.depth)  # exact at scrape time
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
