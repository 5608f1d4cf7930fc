"""FastAPI app factory: one router per concern, shared error format, request ids.

``build_app`` wires routes, error handlers and middleware and touches no state, so the OpenAPI
document can be generated from it (scripts/gen_openapi.py); ``create_app`` adds the state.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.bitstream import BitstreamError
from service.errors import ServiceError
from service.http import classify, fleet, health, metrics, models, predictions
from service.http.context import RequestContext
from service.http.errors import FRAMEWORK_CODES, error_json, error_response
from service.http.limits import JsonBodyLimit
from service.state import ServiceState

ROUTERS = (health.router, metrics.router, models.router, models.codecs, classify.router,
           predictions.router, fleet.router)  # fmt: skip


def build_app() -> FastAPI:
    app = FastAPI(
        title="fercomp",
        version="1",
        summary="Facial-expression recognition on learned-compressed faces.",
        # Every refusal has the same body (ErrorBody); each route lists its own statuses and
        # codes (service.http.errors.error_responses), so the document says what it answers.
    )
    for router in ROUTERS:
        app.include_router(router)
    _openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _integer_bounds(_openapi())
        return app.openapi_schema  # type: ignore[return-value]  # set by _openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(JsonBodyLimit, exempt=(classify.CLASSIFY_PATH,))

    @app.exception_handler(BitstreamError)
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail: Any = exc.detail
        if isinstance(detail, dict) and "error" in detail:  # ours (service.http.errors.http_error)
            return JSONResponse(detail, status_code=exc.status_code, headers=exc.headers)
        code = FRAMEWORK_CODES.get(exc.status_code)
        if code is None:  # a status the framework does not raise today: keep it
            return error_json("error", str(detail), exc.headers, status=exc.status_code)
        return error_json(code, str(detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_json("bad_request", f"{where}: {first.get('msg', 'invalid request')}")

    # Outermost of ours (added last): every response, refusals included, carries the id.
    app.add_middleware(RequestContext)
    return app


def _integer_bounds(node: Any) -> None:
    """Integer bounds as integers: FastAPI's OpenAPI model stores every bound as a float, so
    ``label`` would read ``"minimum": 0.0``, and a generator takes the bound as the value to
    send (``0.0``), which a strict integer field refuses (``3.0`` is not a label)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = int(value)
        for child in node.values():
            _integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _integer_bounds(child)


def create_app(state: ServiceState) -> FastAPI:
    app = build_app()
    app.state.fercomp = state
    return app
