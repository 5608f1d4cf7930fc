"""REST response bodies (pydantic), so the OpenAPI document (docs/openapi.json) has types.

Plain pydantic, no FastAPI and no torch: ``service.convert`` builds ``ClassifyResult`` for
the REST classify route without importing the HTTP app.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from service.fleet.schemas import FleetStatus

#: ``Expression`` enum names of proto/fercomp/v1/fercomp.proto, FER2013 order.
ExpressionName = Literal["ANGRY", "DISGUST", "FEAR", "HAPPY", "SAD", "SURPRISE", "NEUTRAL"]
ModelKind = Literal["codec", "classifier"]


class Health(BaseModel):
    status: Literal["ok"]
    uptime_s: float


class Ready(BaseModel):
    status: Literal["ready"]
    codec: str = Field(description='active codec, "name/version"')
    classifier: str = Field(description='active classifier, "name/version"')
    queue_depth: int
    precision: Literal["bf16", "fp32"] = Field(
        description="inference precision of synthesis and classifier (inference_precision)"
    )


class NotReady(BaseModel):
    status: Literal["not_ready"]


class ClassifyResult(BaseModel):
    """POST /v1/classify: the gRPC ``ClassifyResponse`` fields, by their proto names."""

    request_id: str
    expression: ExpressionName
    expression_name: str
    probabilities: list[float] = Field(description="7 values, FER2013 order")
    codec_version: str = Field(description='"name/version" of the codec that decoded it')
    codec_id: str = Field(description="8 hex chars from the bitstream header")
    classifier_version: str
    decode_ms: float
    inference_ms: float
    queue_ms: float
    received_bytes: int
    index: int
    prediction_id: str = Field(description="id for /v1/predictions/{id}")


class ModelEntry(BaseModel):
    name: str
    version: str
    ref: str
    kind: ModelKind
    codec_id: str = Field(description="8 hex chars; empty for classifiers")
    active: bool
    sha256: str
    created: str
    metrics: dict[str, Any]
    paired_classifier: str | None = Field(
        default=None,
        description="codecs trained jointly with a classifier: the classifier they were trained "
        "with (NAME/VERSION), which reads their faces when the server runs with "
        "pair_classifiers and holds it; null for classifiers and unpaired codecs",
    )


class ActiveModels(BaseModel):
    codec: str
    classifier: str


class ModelList(BaseModel):
    models: list[ModelEntry]
    active: ActiveModels
    fleet: FleetStatus | None = Field(
        description="every live replica's active models and rollout status, as GET /v1/fleet; "
        "null when the shared store cannot be read"
    )


class SwapResult(BaseModel):
    kind: ModelKind
    previous: str
    active: str
    changed: bool = Field(description="false when the ref was already active")
    accuracy: dict[str, Any] | None = Field(description="the canary check, when configured")


class StoredPrediction(BaseModel):
    """One row of the prediction store."""

    id: str
    request_id: str
    client_id: str
    stream_id: str
    created_at: float = Field(description="unix seconds")
    expression: str = Field(description="expression name, lower case")
    probabilities: list[float]
    codec_version: str
    codec_id: str
    classifier_version: str
    bytes: int = Field(description="bitstream size")
    label: int | None = Field(description="ground truth, once labelled")
    transport: str


class PredictionPage(BaseModel):
    items: list[StoredPrediction]
    next_cursor: str | None = Field(description="pass back as cursor; null on the last page")
