"""The fleet: request a rollout every replica converges to, and see how far it got.

``POST /v1/fleet/rollout`` writes the desired models into the store every replica shares;
each replica's ``FleetConverger`` applies them through its own atomic swap
(docs/DEPLOY.md, "Rolling out a model to the fleet"). ``GET /v1/fleet`` reads the same store:
any replica answers for the whole fleet.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from service.fleet.rollout import request_rollout, summary
from service.fleet.schemas import Desired, FleetStatus
from service.http.deps import Admin, State
from service.http.errors import ADMIN, JSON_BODY, error_responses
from service.http.models import REF_PATTERN

log = logging.getLogger("fercomp.service.http")
router = APIRouter(prefix="/v1/fleet", tags=["fleet"])

_REF_DOC = '"name/version" in the repository ("name": its newest version, resolved here)'


class RolloutRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        # at least one of the two, as the handler checks (so the document says it too)
        json_schema_extra={"anyOf": [{"required": ["codec"]}, {"required": ["classifier"]}]},
    )

    codec: str | SkipJsonSchema[None] = Field(
        default=None,  # absent: as before; null is refused below
        min_length=1, max_length=200, description=_REF_DOC,
        json_schema_extra={"pattern": REF_PATTERN},
    )  # fmt: skip
    classifier: str | SkipJsonSchema[None] = Field(
        default=None,
        min_length=1, max_length=200, description=_REF_DOC,
        json_schema_extra={"pattern": REF_PATTERN},
    )  # fmt: skip
    requested_by: str = Field(
        default="", max_length=200, description="who asks, for the record (never a secret)"
    )

    @model_validator(mode="after")
    def _names_a_model(self) -> RolloutRequest:
        if self.codec is None and self.classifier is None:
            raise ValueError("a rollout names a codec, a classifier, or both")
        return self

    @field_validator("codec", "classifier", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:  # leave the field out to keep the fleet's current ref
            raise ValueError("must be a ref; leave it out to keep the current one")
        return v


ROLLOUT_RESPONSES = error_responses(
    *JSON_BODY,
    *ADMIN,
    "bad_ref",
    "not_found",
    "invalid_artifact",
    "store_unavailable",
    notes={
        400: "A `ref` is not NAME/VERSION inside the repository.",
        404: "No artifact `ref` in this server's repository.",
        422: "What the repository holds under a ref is not of its kind (a classifier's ref as "
        "`codec`, or the reverse) or has no readable manifest (`invalid_artifact`); or the "
        "body is invalid (`bad_request`). The schema cannot know what a ref names, so a "
        "request the schema allows can get this.",
        503: "The shared store is unreachable: nothing was written.",
    },
)
STATUS_RESPONSES = error_responses(
    "store_unavailable", notes={503: "The shared store is unreachable."}
)


@router.post("/rollout", responses=ROLLOUT_RESPONSES)
def rollout(body: RolloutRequest, state: State, _: Admin) -> Desired:
    """Make every replica serve these models: each loads, verifies and smoke-tests them and
    switches atomically (a replica that refuses them keeps serving its models and reports
    `failed`). A kind left out keeps the previous rollout's ref. Follow with `GET /v1/fleet`."""
    desired = request_rollout(
        state.fleet, state.registry.repo, body.codec, body.classifier, body.requested_by
    )
    log.info(
        "rollout %d requested: codec=%s classifier=%s by %r",
        desired.generation, desired.codec, desired.classifier, desired.requested_by,
    )  # fmt: skip
    if state.converger is not None:
        state.converger.wake()  # this replica need not wait for its next poll
    return Desired.of(desired)


@router.get("", responses=STATUS_RESPONSES)
def fleet(state: State) -> FleetStatus:
    """The newest rollout and every live replica's report (what it serves, its status)."""
    s = state.settings
    return summary(state.fleet, s.instance_id, s.fleet_poll_s)
