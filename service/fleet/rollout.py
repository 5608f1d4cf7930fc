"""Requesting a rollout and summarising the fleet: what the REST routes do, without FastAPI.

A rollout names refs as the swap API takes them; each is resolved in this server's repository
first ("name" -> its newest "name/version", so every replica loads the same version even if
their repositories differ in what is newest) and checked to be an artifact of the right kind,
before the desired state is written. A kind the request leaves out keeps the previous
rollout's ref (``FleetState.set_desired`` merges it in the same atomic step that numbers the
generation): the desired state is always complete, so a replica started later converges to
all of it, and two rollouts of different kinds at the same instant both take effect.
"""

from __future__ import annotations

from collections import Counter

from core.manifest import ArtifactError, ArtifactNotFound, ModelRepository, read_manifest
from service.errors import BadRequest, SwapError
from service.fleet.schemas import STATUSES, Desired, FleetCounts, FleetStatus, Instance
from service.fleet.state import DesiredModels, FleetState

LIVE_POLLS = 3  # a replica is live while its last heartbeat is at most this many polls old


def resolve(repo: ModelRepository, kind: str, ref: str) -> str:
    """``ref`` as "name/version" after checking the repository holds it as a ``kind``; raises
    ``SwapError`` with the swap API's codes (bad_ref 400, not_found 404, invalid_artifact 422)."""
    if ref.startswith(("/", "\\", "~")) or ":" in ref:
        raise SwapError("bad_ref", f"{ref!r} is not NAME/VERSION in the model repository")
    try:
        path = repo.path(ref)
    except ArtifactNotFound as e:
        raise SwapError("not_found", str(e)) from e
    except ArtifactError as e:
        raise SwapError("bad_ref", str(e)) from e
    try:
        manifest = read_manifest(path)
    except ArtifactError as e:
        raise SwapError("invalid_artifact", f"{ref}: {e}") from e
    if manifest.kind != kind:
        raise SwapError("invalid_artifact", f"{manifest.ref} is a {manifest.kind}, not a {kind}")
    return manifest.ref


def request_rollout(
    fleet: FleetState,
    repo: ModelRepository,
    codec: str | None,
    classifier: str | None,
    requested_by: str,
) -> DesiredModels:
    if codec is None and classifier is None:
        raise BadRequest("a rollout names a codec, a classifier, or both")
    codec = None if codec is None else resolve(repo, "codec", codec)
    classifier = None if classifier is None else resolve(repo, "classifier", classifier)
    return fleet.set_desired(codec, classifier, requested_by)


def summary(fleet: FleetState, instance: str, poll_s: float) -> FleetStatus:
    """The fleet as the shared state has it: the newest rollout and the live replicas."""
    desired = fleet.desired()
    window = LIVE_POLLS * poll_s
    live = fleet.instances(max_age=window)
    by_status: Counter[str] = Counter(r.status for r in live)
    newest = desired.generation if desired is not None else 0
    converged = bool(live) and all(r.status == "converged" and r.generation == newest for r in live)
    return FleetStatus(
        instance=instance,
        desired=None if desired is None else Desired.of(desired),
        instances=[Instance.of(r) for r in live],
        counts=FleetCounts(live=len(live), **{s: by_status[s] for s in STATUSES}),
        converged=converged,
        live_window_s=window,
    )
