"""Model listing, admin swap/rollback, and codec downloads for edge clients.

Downloads let a client fetch the exact codec a server decodes (weights + manifest with its
sha256), so a new edge device can start sending streams the server understands.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from core.artifacts import Manifest
from core.manifest import _SAFE_NAME
from service.errors import NotFound
from service.fleet.rollout import summary
from service.fleet.schemas import FleetStatus
from service.http.deps import Admin, State
from service.http.errors import ADMIN, JSON_BODY, VALIDATION, error_responses
from service.registry import LoadedCodec, SwapOutcome
from service.schemas import ActiveModels, ModelEntry, ModelKind, ModelList, SwapResult
from service.state import ServiceState

log = logging.getLogger("fercomp.service.http")
router = APIRouter(prefix="/v1/models", tags=["models"])
codecs = APIRouter(prefix="/v1/codecs", tags=["models"])


# A reference is NAME or NAME/VERSION, each part a safe name: the repository's own check
# (core.manifest.check_name, via ModelRepository.path), stated in the document. The registry
# enforces it, so a malformed ref stays 400 ``bad_ref`` (absolute paths and ".." included);
# every ref this pattern admits passes that check (and then exists, 404, or does not).
_PART = _SAFE_NAME.pattern.removeprefix("^").removesuffix("$")
REF_PATTERN = f"^{_PART}(/{_PART})?$"


class SwapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    kind: ModelKind
    ref: str = Field(
        min_length=1,
        max_length=200,
        description='"name/version" in the repository ("name": its newest version)',
        json_schema_extra={"pattern": REF_PATTERN},
    )


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    kind: ModelKind


def _entry(m: Manifest, active: bool) -> ModelEntry:
    return ModelEntry(
        name=m.name, version=m.version, ref=m.ref, kind=m.kind, codec_id=m.codec_id or "",
        active=active, sha256=m.sha256, created=m.created, metrics=m.metrics,
        paired_classifier=m.paired_classifier,
    )  # fmt: skip


def _result(o: SwapOutcome) -> SwapResult:
    return SwapResult(
        kind=o.kind, previous=o.previous, active=o.active, changed=o.changed, accuracy=o.accuracy
    )


SWAP_RESPONSES = error_responses(
    *JSON_BODY,
    *ADMIN,
    "bad_ref",
    "not_found",
    "invalid_artifact",
    "smoke_test_failed",
    "incompatible",
    "accuracy_regression",
    "swap_in_progress",
    notes={
        400: "`ref` is not NAME/VERSION inside the repository.",
        404: "No artifact `ref` in the repository.",
        409: "The canary check found the candidate less accurate, or another swap is running.",
        422: "What the repository holds under `ref` cannot be served as `kind`: an artifact "
        "of the other kind (a codec ref with `kind: classifier`, or the reverse), weights "
        "that fail their sha256 or architecture (`invalid_artifact`), or a smoke test "
        "(`smoke_test_failed`, `incompatible`); or the body is invalid (`bad_request`). The "
        "schema cannot know what a ref names, so a request the schema allows can get this.",
    },
)
ROLLBACK_RESPONSES = error_responses(
    *JSON_BODY,
    *ADMIN,
    "nothing_to_rollback",
    "swap_in_progress",
    notes={409: "Nothing to roll back to, or a swap is running."},
)
CODEC_RESPONSES = error_responses(
    *VALIDATION, "not_found", notes={404: "No loaded codec has this id."}
)


@router.get("")
def list_models(state: State) -> ModelList:
    """This server's models, and (`fleet`) what every live replica serves."""
    reg = state.registry
    return ModelList(
        models=[_entry(m, a) for m, a in reg.models()],
        active=ActiveModels(codec=reg.active_codec.ref, classifier=reg.active_classifier.ref),
        fleet=_fleet(state),
    )


def _fleet(state: ServiceState) -> FleetStatus | None:
    """The fleet summary; None when the store cannot be read: this server's own models are
    still worth answering with (``GET /v1/fleet`` says what went wrong)."""
    try:
        return summary(state.fleet, state.settings.instance_id, state.settings.fleet_poll_s)
    except Exception as e:
        log.warning("GET /v1/models: fleet state unreadable: %s", e)
        return None


@router.post("/swap", responses=SWAP_RESPONSES)
def swap(body: SwapRequest, state: State, _: Admin) -> SwapResult:
    """Load, verify, smoke-test (and canary-check) a model, then switch to it atomically."""
    return _result(state.registry.swap(body.kind, body.ref))


@router.post("/rollback", responses=ROLLBACK_RESPONSES)
def rollback(body: RollbackRequest, state: State, _: Admin) -> SwapResult:
    return _result(state.registry.rollback(body.kind))


# 8 hex digits (the header's codec id) or "active"; anything else cannot name a codec.
CodecId = Annotated[str, PathParam(pattern=r"^(active|[0-9a-fA-F]{8})$")]


def _codec(state: State, codec_id: str) -> LoadedCodec:
    """A loaded codec by its 8-hex id, or ``active``."""
    reg = state.registry
    if codec_id == "active":
        return reg.active_codec
    found = next((c for c in reg.codecs() if c.codec_id.hex() == codec_id.lower()), None)
    if found is None:
        have = ", ".join(c.codec_id.hex() for c in reg.codecs())
        raise NotFound(f"codec {codec_id!r} is not loaded; loaded: {have}")
    return found


@codecs.get("/{codec_id}/manifest", responses=CODEC_RESPONSES)
def codec_manifest(codec_id: CodecId, state: State) -> Manifest:
    return _codec(state, codec_id).manifest


@codecs.get(
    "/{codec_id}/download",
    response_class=FileResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
        **CODEC_RESPONSES,
    },
)
def codec_download(codec_id: CodecId, state: State) -> FileResponse:
    """The codec's safetensors weights; verify them against the manifest's sha256."""
    c = _codec(state, codec_id)
    path: Path = c.path / c.manifest.weights_file
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"{c.manifest.name}-{c.manifest.version}.safetensors",
        headers={
            "X-Fercomp-Sha256": c.manifest.sha256,
            "X-Fercomp-Codec-Id": c.codec_id.hex(),
            "X-Fercomp-Ref": c.ref,
        },
    )
