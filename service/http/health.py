"""Liveness (/healthz: the process answers) and readiness (/readyz: models loaded, serving).

Both are ``async`` and so is their one dependency (``deps.get_state``): they run on the event
loop and never wait for a worker thread. FastAPI runs a plain ``def`` endpoint (or
dependency) in anyio's thread pool, and under a flood of ``POST /v1/classify`` every thread of
it can be taken, so a probe would wait behind classification work. Keep them free of anything
that blocks: they read a few attributes and the queue depth.
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.http.deps import State
from service.schemas import Health, NotReady, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(state: State) -> Health:
    return Health(status="ok", uptime_s=round(time.time() - state.started_at, 3))


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": NotReady, "description": "Not ready yet, or shutting down"}},
)
async def readyz(state: State) -> Ready | JSONResponse:
    if not state.ready:
        # Not an error, a state: load balancers read the status, so no {"error"} body.
        return JSONResponse(NotReady(status="not_ready").model_dump(), status_code=503)
    reg = state.registry
    return Ready(
        status="ready",
        codec=reg.active_codec.ref,
        classifier=reg.active_classifier.ref,
        queue_depth=state.engine.depth,
        precision=state.api.precision,
    )
