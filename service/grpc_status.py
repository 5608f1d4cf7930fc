"""Error code -> gRPC status: the one table the gRPC transport answers errors with.

Keyed by the machine code (``service.errors.error_code``), like the HTTP table in
``service.http.errors``, so both transports classify an error the same way;
tests/service/test_error_codes.py checks that every code an error can carry is listed.
"""

from __future__ import annotations

import grpc

from service.errors import error_code

_S = grpc.StatusCode
GRPC_STATUS: dict[str, grpc.StatusCode] = {
    # core.bitstream: the input is malformed ...
    "bitstream_error": _S.INVALID_ARGUMENT,
    "truncated": _S.INVALID_ARGUMENT,
    "bad_magic": _S.INVALID_ARGUMENT,
    "unsupported_version": _S.INVALID_ARGUMENT,
    "bad_dimensions": _S.INVALID_ARGUMENT,
    "corrupt": _S.INVALID_ARGUMENT,
    "trailing_data": _S.INVALID_ARGUMENT,
    "malformed": _S.INVALID_ARGUMENT,
    # ... or well-formed, but this server cannot decode it (its codec is not loaded).
    "unknown_codec": _S.FAILED_PRECONDITION,
    # service.errors
    "payload_too_large": _S.INVALID_ARGUMENT,
    "bad_request": _S.INVALID_ARGUMENT,
    "decoder_crash": _S.INVALID_ARGUMENT,  # the input crashed the decoder
    "unsupported_media_type": _S.INVALID_ARGUMENT,
    "resource_exhausted": _S.RESOURCE_EXHAUSTED,
    "deadline_exceeded": _S.DEADLINE_EXCEEDED,
    "unavailable": _S.UNAVAILABLE,
    "store_unavailable": _S.UNAVAILABLE,
    "not_found": _S.NOT_FOUND,
    "conflict": _S.FAILED_PRECONDITION,
    "internal": _S.INTERNAL,
}


def grpc_status_for(exc: BaseException) -> grpc.StatusCode:
    return GRPC_STATUS.get(error_code(exc), _S.INTERNAL)
