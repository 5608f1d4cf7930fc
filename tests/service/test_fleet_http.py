"""The fleet over REST: POST /v1/fleet/rollout, GET /v1/fleet, GET /v1/models' fleet, metrics."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.errors import StoreUnavailable
from tests.service.conftest import Live, SettingsFactory, metric, running

TOKEN = "fleet-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
POLL_S = 0.2


def rollout(live: Live, headers: dict[str, str] = AUTH, **body: Any) -> httpx.Response:
    return live.http.post("/v1/fleet/rollout", json=body, headers=headers)


def wait_converged(live: Live, generation: int, polls: int = 50) -> dict[str, Any]:
    """GET /v1/fleet until it says converged on ``generation`` (at most ``polls`` polls)."""
    for _ in range(polls):
        fleet: dict[str, Any] = live.http.get("/v1/fleet").json()
        if fleet["converged"] and fleet["desired"]["generation"] == generation:
            return fleet
        time.sleep(POLL_S)
    raise AssertionError(f"not converged after {polls} polls: {fleet}")


@contextmanager
def classifying(live: Live, payload: bytes) -> Iterator[Counter[str]]:
    """Classify ``payload`` in a loop on another thread; yields {status or classifier: n}."""
    seen: Counter[str] = Counter()
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(base_url=str(live.http.base_url), timeout=30) as http:
            while not stop.is_set():
                r = http.post("/v1/classify", content=payload)
                seen[r.json()["classifier_version"] if r.status_code == 200 else str(r)] += 1

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    try:
        yield seen
    finally:
        stop.set()
        worker.join(30)


def test_rollout_converges_with_no_failed_request(
    make_settings: SettingsFactory, payloads_v1: list[bytes]
) -> None:
    settings = make_settings(admin_token=TOKEN, fleet_poll_s=POLL_S, instance_id="replica-1")
    with running(settings) as live:
        fleet = live.http.get("/v1/fleet").json()
        assert fleet["desired"] is None and fleet["converged"]  # the first poll ran in load
        assert [i["instance"] for i in fleet["instances"]] == ["replica-1"]
        with classifying(live, payloads_v1[0]) as seen:
            while sum(seen.values()) < 5:  # traffic before the rollout
                time.sleep(0.01)
            r = rollout(live, codec="tiny-codec/2", classifier="tiny-classifier", requested_by="t")
            assert r.status_code == 200, r.text
            desired = r.json()
            # "name" resolves to its newest version here, so every replica loads the same one
            assert desired | {"requested_at": 0} == {
                "generation": 1, "codec": "tiny-codec/2", "classifier": "tiny-classifier/2",
                "requested_at": 0, "requested_by": "t",
            }  # fmt: skip
            fleet = wait_converged(live, 1)
            after = sum(seen.values())
            while sum(seen.values()) < after + 5:  # traffic after it
                time.sleep(0.01)
        # tiny-codec/1's streams still decode after the codec swap; none failed
        assert set(seen) == {"tiny-classifier/1", "tiny-classifier/2"}, seen
        (instance,) = fleet["instances"]
        assert instance | {"started_at": 0, "heartbeat_at": 0} == {
            "instance": "replica-1", "codec": "tiny-codec/2", "classifier": "tiny-classifier/2",
            "generation": 1, "status": "converged", "error": "", "started_at": 0,
            "heartbeat_at": 0,
        }  # fmt: skip
        assert fleet["counts"] == dict(live=1, converged=1, applying=0, failed=0, diverged=0)
        models = live.http.get("/v1/models").json()
        listed = [(i["instance"], i["status"], i["codec"], i["classifier"])
                  for i in models["fleet"]["instances"]]  # fmt: skip
        assert listed == [("replica-1", "converged", "tiny-codec/2", "tiny-classifier/2")]
        assert models["fleet"]["converged"] and models["fleet"]["instance"] == "replica-1"
        assert models["active"] == {"codec": "tiny-codec/2", "classifier": "tiny-classifier/2"}
        text = live.metrics()
        assert metric(text, "fercomp_fleet_generation", kind="desired") == 1
        assert metric(text, "fercomp_fleet_generation", kind="applied") == 1
        assert metric(text, "fercomp_fleet_converged") == 1
        assert metric(text, "fercomp_fleet_applies_total", result="success") == 1
        assert metric(text, "fercomp_fleet_applies_total", result="failed") == 0
        # a kind left out keeps the previous rollout's ref
        desired = rollout(live, classifier="tiny-classifier/1").json()
        assert (desired["generation"], desired["codec"]) == (2, "tiny-codec/2")
        assert wait_converged(live, 2)["instances"][0]["classifier"] == "tiny-classifier/1"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 422, "bad_request"),
        ({"codec": None}, 422, "bad_request"),
        ({"requested_by": "x"}, 422, "bad_request"),
        ({"codec": "tiny-codec/1", "extra": 1}, 422, "bad_request"),
        ({"codec": "tiny-codec/9"}, 404, "not_found"),
        ({"classifier": "nothing"}, 404, "not_found"),
        ({"codec": "tiny-classifier/2"}, 422, "invalid_artifact"),
        ({"classifier": "tiny-codec/1"}, 422, "invalid_artifact"),
        ({"codec": "../outside"}, 400, "bad_ref"),
        ({"codec": "/etc/passwd"}, 400, "bad_ref"),
    ],
)
def test_a_bad_rollout_is_refused_before_anything_is_written(
    make_settings: SettingsFactory, body: dict[str, Any], status: int, code: str
) -> None:
    with running(make_settings(admin_token=TOKEN)) as live:
        r = rollout(live, **body)
        assert (r.status_code, r.json()["error"]) == (status, code), r.text
        assert live.http.get("/v1/fleet").json()["desired"] is None


def test_rollout_needs_the_admin_token(make_settings: SettingsFactory) -> None:
    with running(make_settings(admin_token=TOKEN)) as live:
        assert rollout(live, headers={}, codec="tiny-codec/2").status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert rollout(live, headers=bad, codec="tiny-codec/2").status_code == 403
        assert live.http.get("/v1/fleet").json()["desired"] is None


def test_a_replica_that_refuses_keeps_serving_and_says_why(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v1: list[bytes]
) -> None:
    weights = repo_copy / "tiny-classifier" / "2" / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    settings = make_settings(models_dir=repo_copy, fleet_poll_s=POLL_S, instance_id="r1")
    with running(settings) as live:
        assert rollout(live, classifier="tiny-classifier/2").status_code == 200
        for _ in range(50):
            fleet = live.http.get("/v1/fleet").json()
            if fleet["counts"]["failed"]:
                break
            time.sleep(POLL_S)
        (instance,) = fleet["instances"]
        assert instance["status"] == "failed" and not fleet["converged"]
        assert instance["error"].startswith("invalid_artifact:")
        assert instance["classifier"] == "tiny-classifier/1"
        r = live.http.post("/v1/classify", content=payloads_v1[0])
        assert r.status_code == 200 and r.json()["classifier_version"] == "tiny-classifier/1"
        text = live.metrics()
        assert metric(text, "fercomp_fleet_applies_total", result="failed") == 1
        assert metric(text, "fercomp_fleet_converged") == 0


def test_two_servers_on_one_sqlite_file_converge_together(
    make_settings: SettingsFactory, tmp_path: Path, payloads_v1: list[bytes]
) -> None:
    """The fleet state is the store's: two servers on one SQLite file are one fleet. A rollout
    posted to one reaches both, and a server started after it applies it before it is ready."""
    db = tmp_path / "shared.sqlite3"
    a_settings = make_settings(fleet_poll_s=POLL_S, instance_id="a", db_path=db)
    with running(a_settings) as a, running(make_settings(fleet_poll_s=POLL_S, instance_id="b",
                                                          db_path=db)) as b:  # fmt: skip
        with classifying(b, payloads_v1[0]) as seen:
            assert rollout(a, classifier="tiny-classifier/2").status_code == 200
            fleet = wait_converged(b, 1)
        assert [(i["instance"], i["classifier"]) for i in fleet["instances"]] == [
            ("a", "tiny-classifier/2"), ("b", "tiny-classifier/2"),
        ]  # fmt: skip
        assert set(seen) <= {"tiny-classifier/1", "tiny-classifier/2"}, seen  # none failed
        c_settings = make_settings(fleet_poll_s=POLL_S, instance_id="c", db_path=db)
        with running(c_settings) as c:
            assert c.state.registry.active_classifier.ref == "tiny-classifier/2"
            assert wait_converged(a, 1)["counts"]["live"] == 3


def test_fleet_disabled_follows_no_rollout(make_settings: SettingsFactory) -> None:
    with running(make_settings(fleet_enabled=False)) as live:
        assert live.state.converger is None
        assert rollout(live, classifier="tiny-classifier/2").status_code == 200
        fleet = live.http.get("/v1/fleet").json()
        assert fleet["instances"] == [] and not fleet["converged"]
        assert live.state.registry.active_classifier.ref == "tiny-classifier/1"


class Unreachable:
    """A FleetState whose database is gone (what the SQL one raises then)."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("prediction store unreachable: connection refused")

        return fail


def test_store_down_fleet_routes_503_and_models_still_answer(
    make_settings: SettingsFactory,
) -> None:
    with running(make_settings(fleet_enabled=False)) as live:
        live.state.fleet = Unreachable()
        for r in (live.http.get("/v1/fleet"), rollout(live, classifier="tiny-classifier/2")):
            assert (r.status_code, r.json()["error"]) == (503, "store_unavailable")
            assert r.headers["retry-after"]
        models = live.http.get("/v1/models")
        assert models.status_code == 200 and models.json()["fleet"] is None
        assert models.json()["active"]["classifier"] == "tiny-classifier/1"
