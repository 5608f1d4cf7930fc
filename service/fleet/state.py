"""Desired models and instance reports: the contract between the fleet logic and the store.

A rollout writes the *desired* codec/classifier once, in the store every replica shares
(PostgreSQL for a fleet, SQLite for one server); each replica converges to it and writes back
what it actually serves. ``generation`` orders rollouts: it grows by one with each
``set_desired``, atomically, so two replicas never disagree on which rollout is newer.

``FleetState`` is implemented by both store backends (service.store) and, for tests of the
fleet logic, by ``MemoryFleetState`` below; tests/service/test_fleet_state.py holds all of
them to the same contract.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Literal, Protocol

InstanceStatus = Literal["converged", "applying", "failed", "diverged"]


@dataclass(frozen=True)
class DesiredModels:
    generation: int  # 1 for the first rollout, +1 for each one after
    codec: str | None  # a ref as the swap API takes it ("name/version"); None: leave as is
    classifier: str | None
    requested_at: float  # unix seconds
    requested_by: str  # free text: who asked (CLI user, admin client); never a secret


@dataclass(frozen=True)
class InstanceReport:
    instance: str  # unique per replica (settings.instance_id: hostname, pod or task name)
    codec: str  # the active codec ref this replica serves now
    classifier: str  # the active classifier ref
    generation: int  # the newest desired generation it has applied (0: none)
    status: InstanceStatus
    error: str  # why the last apply failed ("" when it did not)
    started_at: float  # when the replica process started (unix seconds)
    heartbeat_at: float  # when this report was written (unix seconds)


class FleetState(Protocol):
    def desired(self) -> DesiredModels | None:
        """The newest rollout, or None when none was ever requested."""
        ...

    def set_desired(
        self, codec: str | None, classifier: str | None, requested_by: str
    ) -> DesiredModels:
        """Record a rollout with the next generation and return it. A kind given as None
        keeps the newest rollout's ref (None if there was none). Atomic across replicas: the
        generation and the merge are one step, so concurrent rollouts never lose a kind."""
        ...

    def report(self, report: InstanceReport) -> None:
        """Insert or replace the row of ``report.instance``."""
        ...

    def instances(self, max_age: float | None = None) -> list[InstanceReport]:
        """Every instance's latest report, by instance name; with ``max_age``, only those whose
        heartbeat is at most ``max_age`` seconds old (replicas that are gone drop out)."""
        ...

    def forget(self, older_than: float) -> int:
        """Delete reports whose heartbeat is more than ``older_than`` seconds old; returns how
        many went."""
        ...


class MemoryFleetState:
    """In-process FleetState (tests of the fleet logic; no durability, no sharing)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._desired: DesiredModels | None = None
        self._reports: dict[str, InstanceReport] = {}

    def desired(self) -> DesiredModels | None:
        return self._desired

    def set_desired(
        self, codec: str | None, classifier: str | None, requested_by: str
    ) -> DesiredModels:
        with self._lock:
            prev = self._desired
            gen = 1 if prev is None else prev.generation + 1
            if prev is not None:
                codec = prev.codec if codec is None else codec
                classifier = prev.classifier if classifier is None else classifier
            self._desired = DesiredModels(gen, codec, classifier, time.time(), requested_by)
            return self._desired

    def report(self, report: InstanceReport) -> None:
        with self._lock:
            self._reports[report.instance] = replace(report)

    def instances(self, max_age: float | None = None) -> list[InstanceReport]:
        now = time.time()
        with self._lock:
            rows = sorted(self._reports.values(), key=lambda r: r.instance)
        return [r for r in rows if max_age is None or now - r.heartbeat_at <= max_age]

    def forget(self, older_than: float) -> int:
        now = time.time()
        with self._lock:
            gone = [k for k, r in self._reports.items() if now - r.heartbeat_at > older_than]
            for k in gone:
                del self._reports[k]
        return len(gone)
