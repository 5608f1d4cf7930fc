"""FleetConverger: one replica following the fleet's desired models.

Every ``poll_s`` the converger reads ``FleetState.desired()``. When its generation differs from
the one this replica last applied, it swaps the codec, then the classifier, through
``ModelRegistry.swap`` (load -> verify -> smoke test -> guard -> atomic switch), so requests
never see a half-loaded model; then, every poll, it writes this replica's ``InstanceReport``
(the heartbeat ``GET /v1/fleet`` counts live replicas by).

* A rollout is all or nothing per replica: when the classifier of a rollout is refused after
  its codec was switched, the codec is rolled back, and the replica keeps serving exactly what
  it served. It reports ``failed`` with the refusal, and retries that generation only after
  ``retry_s`` (a broken artifact stays broken; no hot loop). A newer generation is tried at
  once.
* "Differs", not "is newer": a store recreated from scratch starts again at generation 1, and
  its rollouts must still be followed.
* Applies run on a worker thread, so the heartbeat goes on during a long load (a canary check
  takes seconds) and the replica does not drop out of the live set while it works.
* After a rollout is applied, a local admin swap (``POST /v1/models/swap``) makes the replica
  ``diverged``: reported, not undone, so an operator can try a model on one replica. The next
  rollout brings it back.
* The fleet state is a database: when it cannot be read or written, the error is logged
  (once per outage) and counted, and the next poll tries again. Nothing here ends the thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from service.errors import SwapError
from service.fleet.state import DesiredModels, FleetState, InstanceReport, InstanceStatus

log = logging.getLogger("fercomp.service.fleet")
Kind = Literal["codec", "classifier"]
FORGET_AFTER_S = 3600.0  # reports of replicas silent this long are deleted ...
FORGET_EVERY_S = 300.0  # ... checked this often (by every replica: a cheap DELETE)


class _Active(Protocol):
    @property
    def ref(self) -> str: ...


class _Outcome(Protocol):
    @property
    def active(self) -> str: ...

    @property
    def changed(self) -> bool: ...


class Swapper(Protocol):
    """What the converger needs of ``service.registry.ModelRegistry``."""

    @property
    def active_codec(self) -> _Active: ...

    @property
    def active_classifier(self) -> _Active: ...

    def swap(self, kind: Kind, ref: str) -> _Outcome: ...

    def rollback(self, kind: Kind) -> _Outcome: ...


class FleetObserver(Protocol):
    """Where the converger's figures go (``service.metrics.Metrics``)."""

    def on_fleet_poll(self, desired: int, applied: int, converged: bool) -> None: ...

    def on_fleet_apply(self, result: str) -> None: ...

    def on_fleet_state_error(self) -> None: ...


class _NoObserver:
    def on_fleet_poll(self, desired: int, applied: int, converged: bool) -> None:
        pass

    def on_fleet_apply(self, result: str) -> None:
        pass

    def on_fleet_state_error(self) -> None:
        pass


@dataclass(frozen=True)
class _Failure:
    generation: int
    error: str
    retry_at: float


@dataclass
class _Attempt:
    desired: DesiredModels
    done: threading.Event = field(default_factory=threading.Event)
    expected: dict[str, str] = field(default_factory=dict)  # kind -> active ref after success
    error: str | None = None  # "code: message" when refused
    busy: bool = False  # another swap was running: try again next poll, no backoff


class FleetConverger:
    def __init__(
        self,
        registry: Swapper,
        state: FleetState,
        instance: str,
        poll_s: float = 2.0,
        retry_s: float = 60.0,
        observer: FleetObserver | None = None,
        started_at: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.state = state
        self.instance = instance
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.observer = observer or _NoObserver()
        self.clock = clock
        self.started_at = clock() if started_at is None else started_at
        self.applied_generation = 0
        self._expected: dict[str, str] = {}  # what the last applied rollout left active
        self._failure: _Failure | None = None
        self._attempt: _Attempt | None = None
        self._state_ok = True  # for logging an outage once, and its end
        self._forgot_at = 0.0
        self._lock = threading.Lock()  # one poll at a time (the thread, or a caller)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="fercomp-fleet", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; returns within ``timeout`` even while a load is running (the apply
        worker is a daemon thread; a swap it finishes later is still atomic)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Poll now (a rollout was just written through this replica)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # a bug here must not end the replica's convergence for good
                log.exception("fleet poll failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    # -- one poll -------------------------------------------------------------------------
    def poll(self, wait: bool = False) -> InstanceReport | None:
        """Read the desired models, start applying them if due, write the heartbeat; returns
        the report written (None when the desired models could not be read). ``wait``: apply
        on this thread and return after it (start-up, tests)."""
        with self._lock:
            self._collect()
            readable, desired = self._read_desired()
            if not readable:
                return None
            if desired is not None and self._attempt is None and self._due(desired):
                self._attempt = attempt = _Attempt(desired)
                log.info(
                    "applying rollout %d: codec=%s classifier=%s",
                    desired.generation, desired.codec, desired.classifier,
                    extra={"generation": desired.generation},
                )  # fmt: skip
                if wait:
                    self._apply(attempt)
                    self._collect()
                else:
                    worker = threading.Thread(
                        target=self._apply, args=(attempt,), name="fercomp-fleet-apply",
                        daemon=True,
                    )  # fmt: skip
                    worker.start()
            report = self._report(desired)
            self._write(report)
            self._forget_stale()
            gen = desired.generation if desired is not None else 0
            self.observer.on_fleet_poll(gen, self.applied_generation, report.status == "converged")
            return report

    def _read_desired(self) -> tuple[bool, DesiredModels | None]:
        """(readable, the desired models)."""
        try:
            return True, self.state.desired()
        except Exception as e:
            self._state_error("read the desired models", e)
            return False, None

    def _write(self, report: InstanceReport) -> None:
        try:
            self.state.report(report)
        except Exception as e:
            self._state_error("write this replica's report", e)
            return
        if not self._state_ok:
            log.info("fleet state reachable again")
            self._state_ok = True

    def _state_error(self, what: str, e: Exception) -> None:
        self.observer.on_fleet_state_error()
        if self._state_ok:  # once per outage; the counter has every failed poll
            log.warning("fleet state: cannot %s (retrying every %.1fs): %s", what, self.poll_s, e)
            self._state_ok = False

    def _forget_stale(self) -> None:
        now = self.clock()
        if now - self._forgot_at < FORGET_EVERY_S:
            return
        self._forgot_at = now
        try:
            gone = self.state.forget(FORGET_AFTER_S)
        except Exception as e:
            self._state_error("forget stale reports", e)
            return
        if gone:
            log.info("fleet state: forgot %d replica(s) silent over %.0fs", gone, FORGET_AFTER_S)

    def _due(self, desired: DesiredModels) -> bool:
        if desired.generation == self.applied_generation:
            return False
        f = self._failure
        return f is None or f.generation != desired.generation or self.clock() >= f.retry_at

    # -- applying -------------------------------------------------------------------------
    def _apply(self, attempt: _Attempt) -> None:
        """Swap to ``attempt.desired`` (codec first), all or nothing; records the outcome on
        ``attempt``. Runs on the worker thread (or the caller's with ``wait``)."""
        d = attempt.desired
        switched_codec = False
        try:
            steps: tuple[tuple[Kind, str | None], ...] = (
                ("codec", d.codec), ("classifier", d.classifier),
            )  # fmt: skip
            for kind, ref in steps:
                if ref is None:
                    continue
                outcome = self.registry.swap(kind, ref)
                switched_codec = switched_codec or (kind == "codec" and outcome.changed)
                attempt.expected[kind] = outcome.active
        except Exception as e:
            code = e.code if isinstance(e, SwapError) else "internal"
            attempt.busy = code == "swap_in_progress"
            attempt.error = f"{code}: {e.message if isinstance(e, SwapError) else e}"
            if switched_codec:
                self._undo_codec(d.generation)
        finally:
            attempt.done.set()
            self._wake.set()  # report the outcome now, not a poll later

    def _undo_codec(self, generation: int) -> None:
        try:
            self.registry.rollback("codec")
        except Exception as e:  # e.g. an admin swap in between: the replica reports failed
            log.warning("rollout %d: could not roll the codec back: %s", generation, e)

    def _collect(self) -> None:
        """Take in a finished attempt's outcome."""
        attempt = self._attempt
        if attempt is None or not attempt.done.is_set():
            return
        self._attempt = None
        gen = attempt.desired.generation
        if attempt.error is None:
            self.applied_generation = gen
            self._expected = dict(attempt.expected)
            self._failure = None
            self.observer.on_fleet_apply("success")
            log.info("rollout %d applied: %s", gen, self._expected, extra={"generation": gen})
            return
        self.observer.on_fleet_apply("busy" if attempt.busy else "failed")
        if attempt.busy:  # not the artifact's fault: next poll, no backoff
            log.info("rollout %d: %s; retrying next poll", gen, attempt.error)
            return
        self._failure = _Failure(gen, attempt.error, self.clock() + self.retry_s)
        log.warning(
            "rollout %d not applied, still serving codec=%s classifier=%s; retry in %.0fs: %s",
            gen, self.registry.active_codec.ref, self.registry.active_classifier.ref,
            self.retry_s, attempt.error, extra={"generation": gen},
        )  # fmt: skip

    # -- reporting ------------------------------------------------------------------------
    def _status(self, desired: DesiredModels | None) -> tuple[InstanceStatus, str]:
        if self._attempt is not None:
            return "applying", ""
        f = self._failure
        if desired is not None and f is not None and f.generation == desired.generation:
            return "failed", f.error
        if desired is not None and desired.generation != self.applied_generation:
            return "applying", ""  # due, or waiting for a running admin swap to end
        if any(ref != self._active(kind) for kind, ref in self._expected.items()):
            return "diverged", ""
        return "converged", ""

    def _active(self, kind: str) -> str:
        reg = self.registry
        return reg.active_codec.ref if kind == "codec" else reg.active_classifier.ref

    def _report(self, desired: DesiredModels | None) -> InstanceReport:
        status, error = self._status(desired)
        return InstanceReport(
            instance=self.instance, codec=self._active("codec"),
            classifier=self._active("classifier"), generation=self.applied_generation,
            status=status, error=error, started_at=self.started_at, heartbeat_at=self.clock(),
        )  # fmt: skip
