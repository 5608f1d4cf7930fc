"""REST bodies of the fleet routes (pydantic, no FastAPI, no torch), and the fleet summary both
``GET /v1/fleet`` and ``GET /v1/models`` answer."""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, Field

from service.fleet.state import DesiredModels, InstanceReport

STATUSES = ("converged", "applying", "failed", "diverged")


class Desired(BaseModel):
    generation: int = Field(description="1 for the first rollout, +1 for each one after")
    codec: str | None = Field(description='"name/version" every replica serves; null: its default')
    classifier: str | None = Field(description="as codec")
    requested_at: float = Field(description="unix seconds")
    requested_by: str

    @classmethod
    def of(cls, d: DesiredModels) -> Desired:
        return cls(**asdict(d))


class Instance(BaseModel):
    instance: str = Field(description="the replica's instance_id (hostname, pod or task name)")
    codec: str = Field(description="active codec it serves")
    classifier: str = Field(description="active classifier it serves")
    generation: int = Field(description="newest rollout it applied (0: none)")
    status: Literal["converged", "applying", "failed", "diverged"] = Field(
        description="converged: serves the newest rollout; applying: loading it; failed: "
        "refused it (see error) and serves what it served; diverged: a local swap changed "
        "what it serves after the rollout"
    )
    error: str = Field(description='why the last apply failed ("" when it did not)')
    started_at: float = Field(description="unix seconds")
    heartbeat_at: float = Field(description="unix seconds of its last report")

    @classmethod
    def of(cls, r: InstanceReport) -> Instance:
        return cls(**asdict(r))


class FleetCounts(BaseModel):
    live: int
    converged: int
    applying: int
    failed: int
    diverged: int


class FleetStatus(BaseModel):
    instance: str = Field(description="the replica that answered (its instance_id)")
    desired: Desired | None = Field(description="the newest rollout; null before the first")
    instances: list[Instance] = Field(
        description="live replicas: a heartbeat within live_window_s, by instance name"
    )
    counts: FleetCounts
    converged: bool = Field(
        description="at least one live replica, and every live one converged to the newest rollout"
    )
    live_window_s: float = Field(description="3 x fleet_poll_s")
