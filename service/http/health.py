"""Liveness (/healthz: the process answers) and readiness (/readyz: models loaded, serving)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.http.deps import State

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(state: State) -> dict[str, Any]:
    return {"status": "ok", "uptime_s": round(time.time() - state.started_at, 3)}


@router.get("/readyz")
def readyz(state: State) -> JSONResponse:
    if not state.ready:
        return JSONResponse({"status": "not_ready"}, status_code=503)
    reg = state.registry
    return JSONResponse(
        {
            "status": "ready",
            "codec": reg.active_codec.ref,
            "classifier": reg.active_classifier.ref,
            "queue_depth": state.engine.depth,
        }
    )
