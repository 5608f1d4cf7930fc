"""Error code -> HTTP status, in one table, and the one error body: {"error", "detail"}.

Keyed by the machine code (``service.errors.error_code``), like the gRPC table in
``service.grpc_status``; tests/service/test_error_codes.py checks that every code an error can
carry is listed. Codes that only HTTP has (authentication, framework and body-limit refusals)
are listed here too, so no route or middleware writes a status number of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from service.errors import INTERNAL, error_code


class ErrorBody(BaseModel):
    """What every refused request gets back."""

    error: str = Field(description="machine-readable code (docs/SERVING.md)")
    detail: str = Field(description="one human-readable line")


HTTP_STATUS: dict[str, int] = {
    # core.bitstream: the input is malformed ...
    "bitstream_error": 400,
    "truncated": 400,
    "bad_magic": 400,
    "unsupported_version": 400,
    "bad_dimensions": 400,
    "corrupt": 400,
    "trailing_data": 400,
    "malformed": 400,
    # ... or well-formed, but this server cannot decode it (its codec is not loaded).
    "unknown_codec": 422,
    # service.errors
    "decoder_crash": 400,  # the input crashed the decoder
    # Parameters and bodies are validated by FastAPI first, which answers 422; the service's
    # own BadRequest checks the same bounds, so a bad request is 422 whoever notices it.
    "bad_request": 422,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "not_found": 404,
    "conflict": 409,
    "resource_exhausted": 429,
    "unavailable": 503,
    "store_unavailable": 503,
    "deadline_exceeded": 504,
    INTERNAL: 500,
    # model swaps (service.errors.SwapCode; "bad_request" and "not_found" are above)
    "bad_ref": 400,
    "invalid_artifact": 422,
    "smoke_test_failed": 422,
    "incompatible": 422,
    "accuracy_regression": 409,
    "swap_in_progress": 409,
    "nothing_to_rollback": 409,
    # HTTP only: admin authentication, JSON body limits, the framework's own refusals
    "unauthenticated": 401,
    "forbidden": 403,
    "method_not_allowed": 405,
    "length_required": 411,
}
#: Statuses FastAPI/Starlette raise themselves (unknown path, wrong method, a body it cannot
#: parse) -> our code, answered with that code's status from ``HTTP_STATUS``: a JSON body that
#: is not UTF-8 is 422 ``bad_request`` like every other invalid body, not FastAPI's bare 400.
FRAMEWORK_CODES: dict[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    401: "unauthenticated",
    403: "forbidden",
}
#: Refusals a client should retry: they come with ``Retry-After``.
RETRYABLE = frozenset({429, 503})


def http_status(code: str) -> int:
    return HTTP_STATUS.get(code, 500)


#: Codes of a body the server cannot decode (core.bitstream's, and the decoder crashing on it;
#: all 400): what arbitrary bytes on ``POST /v1/classify`` get, since no schema can say which
#: bytes are a bitstream.
BITSTREAM_CODES = ("bad_magic", "truncated", "unsupported_version", "bad_dimensions", "corrupt",
                   "trailing_data", "malformed", "bitstream_error", "decoder_crash")  # fmt: skip
#: What every route with parameters or a body can answer: FastAPI's validation, 422.
VALIDATION = ("bad_request",)
#: What every JSON-body route can answer on top (``service.http.limits.JsonBodyLimit``).
JSON_BODY = (*VALIDATION, "payload_too_large", "length_required")
#: The admin routes' bearer token (``service.http.deps.require_admin``).
ADMIN = ("unauthenticated", "forbidden")


def error_responses(*codes: str, notes: Mapping[int, str] | None = None) -> dict[int | str, Any]:
    """The OpenAPI ``responses`` of a route that refuses with ``codes``: one entry per HTTP
    status (from ``HTTP_STATUS``, the same table the handlers use), each the ``ErrorBody`` model
    with its codes listed; ``notes`` adds a sentence to a status's description. Statuses a
    client should retry document their ``Retry-After`` header."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        if code not in HTTP_STATUS:
            raise KeyError(f"{code!r} is not in HTTP_STATUS")
        by_status.setdefault(HTTP_STATUS[code], []).append(code)
    out: dict[int | str, Any] = {}
    for status, listed in sorted(by_status.items()):
        description = "`error`: " + ", ".join(f"`{c}`" for c in listed)
        if notes and status in notes:
            description = f"{notes[status]} {description}"
        entry: dict[str, Any] = {"model": ErrorBody, "description": description}
        if status in RETRYABLE:
            entry["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before retrying",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                }
            }
        out[status] = entry
    if notes and not set(notes) <= set(by_status):
        raise ValueError(f"notes for statuses without codes: {sorted(set(notes) - set(by_status))}")
    return out


def error_json(
    code: str, detail: str, headers: Mapping[str, str] | None = None, status: int | None = None
) -> JSONResponse:
    """The error body for ``code``, with its status from ``HTTP_STATUS`` (``status`` only for
    framework errors that arrive with a status of their own)."""
    status = http_status(code) if status is None else status
    extra = {"Retry-After": "1"} if status in RETRYABLE else {}
    body = ErrorBody(error=code, detail=detail).model_dump()
    return JSONResponse(body, status_code=status, headers={**extra, **(headers or {})})


def error_response(exc: BaseException) -> JSONResponse:
    """The response for an exception a route raised; unexpected ones say only "internal
    error" (the traceback is logged, never sent)."""
    code = error_code(exc)
    return error_json(code, "internal error" if code == INTERNAL else str(exc))


def http_error(code: str, detail: str, headers: Mapping[str, str] | None = None) -> HTTPException:
    """An ``HTTPException`` for a dependency to raise (FastAPI dependencies cannot return a
    response); the app's handler turns its ``{"error", "detail"}`` into the body."""
    body = ErrorBody(error=code, detail=detail).model_dump()
    return HTTPException(http_status(code), detail=body, headers=dict(headers or {}) or None)
