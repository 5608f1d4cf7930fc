"""The FleetState contract (service/fleet/state.py), one suite for every implementation: the
in-memory reference, and ``PredictionStore.fleet`` on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from service.fleet.state import DesiredModels, FleetState, InstanceReport, MemoryFleetState
from tests.service.test_store import StoreFactory


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FleetState]:
    if request.param == "memory":
        yield MemoryFleetState()
        return
    factory = StoreFactory(request.param, tmp_path, request)
    yield factory.store().fleet
    factory.close_all()


def report(instance: str, age: float = 0.0, generation: int = 1) -> InstanceReport:
    now = time.time()
    return InstanceReport(instance, "c/1", "k/1", generation, "converged", "", now - 100, now - age)


def test_desired_starts_empty_and_grows_by_one(fleet: FleetState) -> None:
    assert fleet.desired() is None
    first = fleet.set_desired("c/2", None, "alice")
    assert (first.generation, first.codec, first.classifier, first.requested_by) == (
        1,
        "c/2",
        None,
        "alice",
    )
    assert abs(first.requested_at - time.time()) < 60
    second = fleet.set_desired(None, "k/3", "bob")
    assert second.generation == 2 and fleet.desired() == second
    # a kind left out keeps the newest rollout's ref, merged in the same step
    assert (second.codec, second.classifier) == ("c/2", "k/3")
    third = fleet.set_desired("c/4", None, "carol")
    assert (third.generation, third.codec, third.classifier) == (3, "c/4", "k/3")


def test_concurrent_rollouts_of_different_kinds_both_take_effect(fleet: FleetState) -> None:
    """A codec-only and a classifier-only rollout at the same instant, many times over: the
    newest desired state always carries both (neither merge reads a stale previous row)."""
    fleet.set_desired("c/0", "k/0", "setup")
    for i in range(1, 6):
        start = threading.Barrier(2)

        def codec_only(i: int = i, start: threading.Barrier = start) -> None:
            start.wait()
            fleet.set_desired(f"c/{i}", None, "a")

        def classifier_only(i: int = i, start: threading.Barrier = start) -> None:
            start.wait()
            fleet.set_desired(None, f"k/{i}", "b")

        threads = [threading.Thread(target=codec_only), threading.Thread(target=classifier_only)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        d = fleet.desired()
        assert d is not None and (d.codec, d.classifier) == (f"c/{i}", f"k/{i}"), d


def test_concurrent_set_desired_gets_distinct_consecutive_generations(fleet: FleetState) -> None:
    """Eight threads (replicas) roll out at once, four times each: every call gets its own
    generation, with no gap, and the newest is the desired one."""
    got: list[DesiredModels] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def rollout(n: int) -> None:
        try:
            start.wait()
            for i in range(4):
                d = fleet.set_desired(f"c/{n}", f"k/{i}", f"replica-{n}")
                with lock:
                    got.append(d)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=rollout, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(d.generation for d in got) == list(range(1, 33))
    newest = max(got, key=lambda d: d.generation)
    assert fleet.desired() == newest


def test_report_inserts_then_replaces(fleet: FleetState) -> None:
    a, b = report("replica-a"), report("replica-b")
    fleet.report(b)
    fleet.report(a)
    assert fleet.instances() == [a, b]  # by instance name
    failed = replace(a, generation=2, status="failed", error="accuracy_regression: too low",
                     heartbeat_at=time.time())  # fmt: skip
    fleet.report(failed)
    assert fleet.instances() == [failed, b]


def test_instances_max_age_and_forget(fleet: FleetState) -> None:
    fresh, stale = report("fresh", age=1.0), report("stale", age=120.0)
    fleet.report(fresh)
    fleet.report(stale)
    assert fleet.instances(max_age=60) == [fresh]
    assert fleet.instances() == [fresh, stale]
    assert fleet.forget(older_than=60) == 1
    assert fleet.instances() == [fresh]
    assert fleet.forget(older_than=60) == 0


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sql_fleet_state_is_shared_between_stores(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two stores on one database (two replicas) see one fleet state."""
    factory = StoreFactory(kind, tmp_path, request)
    try:
        one, two = factory.store().fleet, factory.store().fleet
        d = one.set_desired("c/2", "k/2", "ops")
        assert two.desired() == d
        two.report(report("two"))
        assert [r.instance for r in one.instances()] == ["two"]
    finally:
        factory.close_all()
