"""Transport-neutral service errors: each carries a machine ``code`` and a one-line message.

Bitstream problems keep their ``core.bitstream.BitstreamError`` type (its ``code`` is already
stable); everything the service itself refuses is a ``ServiceError`` below. Nothing here knows
a transport: ``service.http.errors.HTTP_STATUS`` and ``service.grpc_status.GRPC_STATUS`` map
the codes to HTTP and gRPC statuses, each in one table.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

from core.bitstream import BitstreamError

INTERNAL = "internal"  # the code of anything unexpected; its message never leaves the server


class ServiceError(Exception):
    """Base class; ``code`` is machine-readable, the message is one human-readable line."""

    code: ClassVar[str] = INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QueueFull(ServiceError):
    code = "resource_exhausted"


class DeadlineExpired(ServiceError):
    code = "deadline_exceeded"


class ShuttingDown(ServiceError):
    code = "unavailable"


class StoreUnavailable(ServiceError):
    """The prediction could not be committed, so it is not acknowledged (retry is safe)."""

    code = "store_unavailable"


class StreamLimit(ServiceError):
    """Too many concurrent streams: refused at once instead of queueing for a thread."""

    code = "resource_exhausted"


class RpcLimit(ServiceError):
    """Every slot of the gRPC call budget (``grpc_max_concurrent_rpcs``: calls running or
    waiting for a handler thread) is taken: refused at once. Health checks and reflection are
    outside the budget (service/admission.py)."""

    code = "resource_exhausted"


class UnsupportedMediaType(ServiceError):
    code = "unsupported_media_type"


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"


class NotFound(ServiceError):
    code = "not_found"


class Conflict(ServiceError):
    code = "conflict"


class BadRequest(ServiceError):
    code = "bad_request"


class InvalidField(BadRequest):
    """A classify field out of range (label, ids), refused by the pipeline for every transport:
    gRPC INVALID_ARGUMENT, and REST 422 like its other field validation (code ``bad_request``,
    mapped in service/http/errors.py and service/grpc_status.py)."""


class DecoderCrashed(ServiceError):
    """The entropy decoder process died on this input (service/decode_worker.py restarts it);
    the input is to blame, so it maps like a bad bitstream."""

    code = "decoder_crash"


#: Why a model swap or rollback was refused (docs/SERVING.md, "Model swaps").
SwapCode = Literal[
    "bad_request",  # unknown kind
    "bad_ref",  # not NAME/VERSION, or resolving outside the repository
    "not_found",  # a well-formed ref that names no artifact
    "invalid_artifact",  # checksum, architecture or kind does not match
    "smoke_test_failed",
    "incompatible",  # classifier input channels != the active codec's output
    "accuracy_regression",
    "swap_in_progress",
    "nothing_to_rollback",
]
SWAP_CODES: tuple[SwapCode, ...] = get_args(SwapCode)


class SwapError(ServiceError, ValueError):
    """A refused model swap/rollback; unlike the classes above its ``code`` is per instance
    (one of ``SwapCode``), because one swap can fail in many ways."""

    def __init__(self, code: SwapCode, message: str) -> None:
        super().__init__(message)
        self.code = code  # type: ignore[misc]  # per-instance on purpose


def error_code(exc: BaseException) -> str:
    """The machine-readable code of any error a request can end with."""
    if isinstance(exc, BitstreamError | ServiceError):
        return exc.code
    return INTERNAL
