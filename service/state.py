"""Everything a transport needs, built from ``Settings`` (nothing loads until ``load``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core import bitstream
from core.artifacts import ModelRepository
from service import heap
from service.decode_worker import LatentDecoder
from service.engine import InferenceEngine
from service.fleet.converger import FleetConverger
from service.fleet.state import FleetState
from service.metrics import Metrics
from service.model_api import FerModelAPI
from service.pipeline import Pipeline
from service.registry import ModelRegistry
from service.settings import Settings
from service.store import PredictionStore, build_store
from service.types import ClassifyInput, Prediction
from service.validation import AccuracyGuard, load_canary


def _on_models_changed(metrics: Metrics, gc_freeze: bool) -> Callable[[Any], None]:
    """The registry's change hook: the models gauge, then (with ``gc_freeze``) a refreeze,
    so a model the change dropped is collected even if it sits in a reference cycle."""

    def changed(models: Any) -> None:
        metrics.set_models(models)
        if gc_freeze:
            heap.refreeze()

    return changed


@dataclass
class ServiceState:
    settings: Settings
    registry: ModelRegistry
    api: FerModelAPI
    engine: InferenceEngine[ClassifyInput, Any, Any, Prediction]
    store: PredictionStore
    metrics: Metrics
    pipeline: Pipeline
    fleet: FleetState  # in the store: shared by every replica on the same database
    converger: FleetConverger | None = None  # None: fleet_enabled=false
    started_at: float = field(default_factory=time.time)
    ready: bool = False  # models loaded and not shutting down (readiness, gRPC health)

    @classmethod
    def build(cls, settings: Settings) -> ServiceState:
        metrics = Metrics()
        precision = settings.resolved_precision()
        guard = None
        if settings.canary_data is not None:
            images, labels = load_canary(settings.canary_data, settings.canary_size)
            guard = AccuracyGuard(images, labels, settings.canary_margin, precision=precision)
        side = settings.max_image_side
        registry = ModelRegistry(
            ModelRepository(settings.models_dir),
            device=settings.resolved_device(),
            guard=guard,
            limits=bitstream.Limits(
                max_dim=side, max_pixels=side * side, max_total_bytes=settings.max_payload_bytes
            ),
            on_change=_on_models_changed(metrics, settings.gc_freeze),
            on_swap=metrics.on_swap,
            pair_classifiers=settings.pair_classifiers,
        )
        decoder = LatentDecoder(
            settings.decode_isolation, settings.decode_threads, settings.decode_v1_prestart
        )
        api = FerModelAPI(registry, decoder, tta_flip=settings.tta_flip, precision=precision)
        store = build_store(
            settings, on_drop=metrics.store_dropped.inc, on_error=metrics.on_store_error
        )
        engine: InferenceEngine[ClassifyInput, Any, Any, Prediction] = InferenceEngine(
            api,
            max_batch_size=settings.max_batch_size,
            max_queue_delay=settings.max_queue_delay_ms / 1e3,
            max_queue_size=settings.max_queue_size,
            observer=metrics,
            results_scope=store.grouped,  # a batch's predictions: one commit
        )
        pipeline = Pipeline(
            engine,
            store,
            metrics,
            settings.max_payload_bytes,
            settings.request_timeout,
            stream_window=settings.stream_max_in_flight,
        )
        state = cls(settings, registry, api, engine, store, metrics, pipeline, store.fleet)
        if settings.fleet_enabled:
            state.converger = FleetConverger(
                registry, state.fleet, settings.instance_id, settings.fleet_poll_s,
                settings.fleet_retry_s, observer=metrics, started_at=state.started_at,
            )  # fmt: skip
        return state

    def load(self) -> None:
        """Load models, open the store, start the engine (does not mark ready)."""
        self.registry.load_initial(self.settings.preload_codecs)
        self.api.setup()
        self.store.open()
        self.engine.start()
        if self.converger is not None:
            # Apply the fleet's desired models before this replica is ready, so a replica that
            # scales up never serves the defaults the rest of the fleet left. If they cannot be
            # applied, it becomes ready on what it loaded and reports "failed" (the thread
            # retries after fleet_retry_s); if the store cannot be read, it starts on what it
            # loaded and the thread applies them once the store answers.
            self.converger.poll(wait=True)
            self.converger.start()

    def close(self, drain: bool = True) -> None:
        """Finish queued work (each result is committed as it completes), then close the store."""
        self.ready = False
        if self.converger is not None:
            self.converger.stop()  # no model change while draining
        self.engine.stop(drain=drain, timeout=self.settings.shutdown_grace or None)
        self.api.decoder.close()
        self.store.close()
