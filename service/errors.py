"""Transport-neutral service errors; gRPC and HTTP each map ``code`` to their own status.

Bitstream problems keep their ``core.bitstream.BitstreamError`` type (its ``code`` is already
stable); everything the service itself refuses is a ``ServiceError`` below.
"""

from __future__ import annotations

from typing import ClassVar

from core.bitstream import BitstreamError, UnknownCodec


class ServiceError(Exception):
    """Base class; ``code`` is machine-readable, the message is one human-readable line."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QueueFull(ServiceError):
    code = "resource_exhausted"
    http_status = 429


class DeadlineExpired(ServiceError):
    code = "deadline_exceeded"
    http_status = 504


class ShuttingDown(ServiceError):
    code = "unavailable"
    http_status = 503


class StoreUnavailable(ServiceError):
    """The prediction could not be committed, so it is not acknowledged (retry is safe)."""

    code = "store_unavailable"
    http_status = 503


class StreamLimit(ServiceError):
    """Too many concurrent streams: refused at once instead of queueing for a thread."""

    code = "resource_exhausted"
    http_status = 429


class UnsupportedMediaType(ServiceError):
    code = "unsupported_media_type"
    http_status = 415


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"
    http_status = 413


class NotFound(ServiceError):
    code = "not_found"
    http_status = 404


class Conflict(ServiceError):
    code = "conflict"
    http_status = 409


class BadRequest(ServiceError):
    code = "bad_request"
    http_status = 400


class InvalidField(BadRequest):
    """A classify field out of range (label, ids), refused by the pipeline for every transport:
    gRPC INVALID_ARGUMENT, and REST 422 like its other field validation."""

    http_status = 422


class DecoderCrashed(ServiceError):
    """The entropy decoder process died on this input (service/decode_worker.py restarts it)."""

    code = "decoder_crash"
    http_status = 400  # the input is to blame: gRPC INVALID_ARGUMENT


class SwapError(ServiceError, ValueError):
    """A refused model swap/rollback; ``code`` varies (bad_ref, invalid_artifact, ...)."""

    def __init__(self, code: str, message: str, http_status: int) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # per-instance on purpose
        self.http_status = http_status  # type: ignore[misc]


def error_code(exc: BaseException) -> str:
    """The machine-readable code of any error a request can end with."""
    if isinstance(exc, BitstreamError | ServiceError):
        return exc.code
    return "internal"


def http_status_for(exc: BaseException) -> int:
    if isinstance(exc, UnknownCodec):
        return 422  # well-formed, but this server cannot decode it (gRPC FAILED_PRECONDITION)
    if isinstance(exc, BitstreamError):
        return 400
    if isinstance(exc, ServiceError):
        return exc.http_status
    return 500
