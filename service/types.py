"""The classify path's value types: what a transport hands in and what comes back.

Plain dataclasses with no torch, so the store, the metrics and the transports can use them
without importing the models (an import-linter contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RequestMeta:
    request_id: str = ""
    client_id: str = ""
    stream_id: str = ""
    label: int | None = None
    transport: str = "grpc"


@dataclass(frozen=True)
class ClassifyInput:
    payload: bytes
    meta: RequestMeta


@dataclass(frozen=True)
class Prediction:
    """One classified face, as returned to clients and written to the store."""

    id: str
    request_id: str
    client_id: str
    stream_id: str
    created_at: float  # unix seconds
    expression: int
    expression_name: str
    probabilities: list[float]
    codec_version: str
    codec_id: str
    classifier_version: str
    received_bytes: int
    height: int
    width: int
    channels: int
    decode_ms: float
    inference_ms: float
    queue_ms: float
    batch_size: int
    transport: str
    total_ms: float = 0.0
    label: int | None = None


class ModelDescription(Protocol):
    """What the server reports about a loaded model (``core.artifacts.Manifest`` has it); a
    protocol so metrics and conversions need not import the artifact code, and with it torch."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def codec_id(self) -> str | None: ...
    @property
    def sha256(self) -> str: ...
    @property
    def ref(self) -> str: ...
    @property
    def paired_classifier(self) -> str | None: ...
