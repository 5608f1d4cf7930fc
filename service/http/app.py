"""FastAPI app factory: one router per concern, shared error format, request ids."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.bitstream import BitstreamError
from service.errors import ServiceError, error_code, http_status_for
from service.http import classify, health, metrics, models, predictions
from service.http.limits import JsonBodyLimit
from service.logs import request_id_or_new, request_id_var
from service.state import ServiceState

log = logging.getLogger("fercomp.service.http")
_HTTP_CODES = {
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


def error_response(exc: BaseException) -> JSONResponse:
    """The one error body every endpoint uses: {"error": code, "detail": message}."""
    status = http_status_for(exc)
    body = {"error": error_code(exc), "detail": str(exc) if status < 500 else "internal error"}
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(state: ServiceState) -> FastAPI:
    app = FastAPI(
        title="fercomp",
        version="1",
        summary="Facial-expression recognition on learned-compressed faces.",
    )
    app.state.fercomp = state
    for module in (health, metrics, models, classify, predictions):
        app.include_router(module.router)
    app.add_middleware(JsonBodyLimit, exempt=("/v1/classify",))

    @app.exception_handler(BitstreamError)
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if isinstance(detail, dict) and "error" in detail:
            body = detail
        else:
            body = {"error": _HTTP_CODES.get(exc.status_code, "error"), "detail": str(detail)}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        detail = f"{where}: {first.get('msg', 'invalid request')}"
        return JSONResponse({"error": "bad_request", "detail": detail}, status_code=422)

    @app.middleware("http")
    async def _request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request_id_or_new(request.headers.get("x-request-id"))
        token = request_id_var.set(rid)
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
        finally:
            request_id_var.reset(token)
        response.headers["x-request-id"] = rid
        ms = (time.perf_counter() - t0) * 1e3
        log.info(
            "http %s %s %d", request.method, request.url.path, response.status_code,
            extra={"request_id": rid, "path": request.url.path, "status": response.status_code,
                   "duration_ms": round(ms, 3)},
        )  # fmt: skip
        return response

    return app
