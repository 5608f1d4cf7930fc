"""FleetConverger on MemoryFleetState with real ModelRegistry replicas over the test models."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from core.artifacts import ModelRepository
from service.fleet.converger import FleetConverger
from service.fleet.rollout import summary
from service.fleet.state import DesiredModels, InstanceReport, MemoryFleetState
from service.registry import ModelRegistry


class Observer:
    def __init__(self) -> None:
        self.applies: Counter[str] = Counter()
        self.state_errors = 0
        self.last: tuple[int, int, bool] | None = None

    def on_fleet_poll(self, desired: int, applied: int, converged: bool) -> None:
        self.last = (desired, applied, converged)

    def on_fleet_apply(self, result: str) -> None:
        self.applies[result] += 1

    def on_fleet_state_error(self) -> None:
        self.state_errors += 1


class Clock:
    """Wall time that moves only when a test moves it (MemoryFleetState ages reports by the
    real clock, so it starts at now)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def registry(models: Path) -> ModelRegistry:
    reg = ModelRegistry(ModelRepository(models), device="cpu")
    reg.load_initial("default")
    return reg


Replica = tuple[ModelRegistry, FleetConverger, Observer]


@pytest.fixture
def replica(repo_copy: Path) -> Callable[..., Replica]:
    def make(
        name: str, fleet: MemoryFleetState, clock: Callable[[], float] | None = None
    ) -> Replica:
        reg, obs = registry(repo_copy), Observer()
        conv = FleetConverger(
            reg, fleet, name, poll_s=0.05, retry_s=60.0, observer=obs, clock=clock or Clock()
        )
        return reg, conv, obs

    return make


def served(reg: ModelRegistry) -> tuple[str, str]:
    return reg.active_codec.ref, reg.active_classifier.ref


def poll(conv: FleetConverger) -> InstanceReport:
    report = conv.poll(wait=True)
    assert report is not None
    return report


def test_a_rollout_converges_every_replica(replica: Callable[..., Replica]) -> None:
    fleet = MemoryFleetState()
    (reg_a, a, obs_a), (reg_b, b, _) = replica("a", fleet), replica("b", fleet)
    assert poll(a).status == poll(b).status == "converged"  # nothing desired yet
    assert not summary(fleet, "a", 3600).desired

    fleet.set_desired("tiny-codec/2", "tiny-classifier/2", "test")
    for conv in (a, b):
        report = poll(conv)
        assert (report.status, report.generation, report.error) == ("converged", 1, "")
        assert (report.codec, report.classifier) == ("tiny-codec/2", "tiny-classifier/2")
    assert served(reg_a) == served(reg_b) == ("tiny-codec/2", "tiny-classifier/2")
    assert obs_a.applies == Counter(success=1) and obs_a.last == (1, 1, True)
    view = summary(fleet, "a", 3600)
    assert view.converged and view.counts.live == view.counts.converged == 2
    assert [i.instance for i in view.instances] == ["a", "b"]

    poll(a)  # the same generation again: nothing to apply
    assert obs_a.applies == Counter(success=1)
    # a classifier-only rollout leaves the codec as the fleet has it
    fleet.set_desired(None, "tiny-classifier/1", "test")
    assert poll(a).status == "converged"
    assert served(reg_a) == ("tiny-codec/2", "tiny-classifier/1")


def break_weights(models: Path, ref: str) -> None:
    weights = models / ref / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))


def test_a_refused_rollout_keeps_the_served_models_and_backs_off(
    replica: Callable[..., Replica], repo_copy: Path
) -> None:
    break_weights(repo_copy, "tiny-classifier/2")
    fleet, clock = MemoryFleetState(), Clock()
    reg, conv, obs = replica("a", fleet, clock)
    swaps = count_swaps(reg)
    fleet.set_desired("tiny-codec/2", "tiny-classifier/2", "test")

    report = poll(conv)
    assert report.status == "failed" and report.generation == 0
    assert report.error.startswith("invalid_artifact:") and "checksum" in report.error
    # all or nothing: the codec it switched first went back
    assert served(reg) == ("tiny-codec/1", "tiny-classifier/1")
    assert obs.applies == Counter(failed=1) and obs.last == (1, 0, False)
    assert swaps == Counter(codec=1, classifier=1)

    for _ in range(5):  # polls within fleet_retry_s do not try again
        clock.now += 10
        assert poll(conv).status == "failed"
    assert swaps == Counter(codec=1, classifier=1)
    clock.now += 10.1  # 60 s after the failure: one more try, refused again
    assert poll(conv).status == "failed"
    assert swaps == Counter(codec=2, classifier=2) and obs.applies == Counter(failed=2)

    fleet.set_desired("tiny-codec/2", "tiny-classifier/1", "test")  # newer: tried at once
    report = poll(conv)
    assert (report.status, report.generation, report.error) == ("converged", 2, "")
    assert served(reg) == ("tiny-codec/2", "tiny-classifier/1")


def count_swaps(reg: ModelRegistry) -> Counter[str]:
    calls: Counter[str] = Counter()
    original = reg.swap

    def counted(kind, ref):  # type: ignore[no-untyped-def]
        calls[kind] += 1
        return original(kind, ref)

    reg.swap = counted  # type: ignore[method-assign]
    return calls


def test_a_ref_this_replica_lacks_fails_with_the_reason(replica: Callable[..., Replica]) -> None:
    fleet = MemoryFleetState()
    reg, conv, _ = replica("a", fleet)
    fleet.set_desired(None, "tiny-classifier/9", "test")  # e.g. another replica's repository
    report = poll(conv)
    assert report.status == "failed" and report.error.startswith("not_found:")
    assert served(reg) == ("tiny-codec/1", "tiny-classifier/1")


def test_a_local_swap_after_a_rollout_is_diverged(replica: Callable[..., Replica]) -> None:
    fleet = MemoryFleetState()
    reg, conv, obs = replica("a", fleet)
    fleet.set_desired(None, "tiny-classifier/2", "test")
    assert poll(conv).status == "converged"
    reg.swap("classifier", "tiny-classifier/1")  # an operator's POST /v1/models/swap
    assert poll(conv).status == "diverged"
    assert served(reg)[1] == "tiny-classifier/1"  # reported, not undone
    assert obs.last == (1, 1, False)
    fleet.set_desired(None, "tiny-classifier/2", "test")  # the next rollout brings it back
    assert poll(conv).status == "converged" and served(reg)[1] == "tiny-classifier/2"


def test_a_running_swap_delays_the_apply_without_backoff(replica: Callable[..., Replica]) -> None:
    fleet = MemoryFleetState()
    reg, conv, obs = replica("a", fleet)
    fleet.set_desired(None, "tiny-classifier/2", "test")
    with reg._swap_lock:  # an admin swap in progress on this replica
        assert poll(conv).status == "applying"
    assert obs.applies == Counter(busy=1)
    assert poll(conv).status == "converged"  # the next poll, not fleet_retry_s later


class FlakyState(MemoryFleetState):
    """Fails every call while ``down`` is set (a database that went away)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = threading.Event()

    def desired(self) -> DesiredModels | None:
        if self.down.is_set():
            raise ConnectionError("database unreachable")
        return super().desired()

    def report(self, report: InstanceReport) -> None:
        if self.down.is_set():
            raise ConnectionError("database unreachable")
        super().report(report)


def test_store_errors_are_counted_and_the_thread_lives_on(
    replica: Callable[..., Replica],
) -> None:
    fleet = FlakyState()
    reg, _, _ = replica("a", fleet)
    obs, seen = Observer(), threading.Event()
    conv = FleetConverger(reg, fleet, "a", poll_s=0.01, observer=obs)
    fleet.down.set()
    assert conv.poll() is None and obs.state_errors == 1
    conv.start()
    try:
        wait_for(lambda: obs.state_errors >= 5)
        fleet.set_desired(None, "tiny-classifier/2", "test")
        fleet.down.clear()
        wait_for(lambda: any(r.status == "converged" for r in fleet.instances()))
        wait_for(lambda: obs.last == (1, 1, True))
        seen.set()
    finally:
        conv.stop(timeout=10)
    assert seen.is_set() and served(reg)[1] == "tiny-classifier/2"


def test_stop_ends_the_thread_without_waiting_for_the_next_poll(
    replica: Callable[..., Replica],
) -> None:
    fleet = MemoryFleetState()
    reg, _, _ = replica("a", fleet)
    conv = FleetConverger(reg, fleet, "a", poll_s=3600.0)
    conv.start()
    wait_for(lambda: len(fleet.instances()) == 1)  # the first poll ran; the next is an hour off
    assert conv._thread is not None
    conv.stop(timeout=30)
    assert not conv._thread.is_alive()


def test_stale_reports_are_forgotten(replica: Callable[..., Replica]) -> None:
    fleet, clock = MemoryFleetState(), Clock()
    _, conv, _ = replica("a", fleet, clock)
    gone = InstanceReport("gone", "c/1", "k/1", 0, "converged", "", 0.0, 0.0)  # epoch: stale
    fleet.report(gone)
    poll(conv)
    assert [r.instance for r in fleet.instances()] == ["a"]


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            done.set()
            break
        done.wait(0.01)
    assert done.is_set(), "condition not reached"
