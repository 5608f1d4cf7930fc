"""Prometheus metrics (own ``CollectorRegistry`` per server; histograms, never summaries).

Every metric is documented in docs/METRICS.md with the PromQL that turns it into bandwidth
and accuracy numbers; its row in the reference table is generated from its entry in
service/metric_catalog.py (scripts/gen_metrics_doc.py), which the tests hold to this file.
Label values are bounded: transports, error codes, expression names, model refs - never
request or client ids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from core.bitstream import BitstreamError
from core.labels import EXPRESSIONS
from service.errors import INTERNAL, ServiceError, SwapError
from service.store.base import STORE_ERROR_REASONS, STORE_OPS
from service.types import ModelDescription, Prediction

# No ``*_created`` timestamp series: one per counter and histogram label set, a fifth of the
# page, and nothing here (rules, dashboards, alerts) reads them. Process-wide, on purpose.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# Face sizes. histogram_quantile() interpolates linearly inside one bucket, so its error grows
# with the bucket's width: the bounds are geometric (a fixed relative width) over the range
# the bundled codecs produce on FER2013, coarse outside (docs/METRICS.md, "Size buckets").
# Re-fit with scripts/fit_size_buckets.py when a codec moves that range.
FINE_BYTES_RANGE = (32, 1024)  # bytes per face (48x48 container)
FINE_STEPS_PER_OCTAVE = 12  # bounds 2^(1/12) apart: buckets about 6 % wide
FACE_PIXELS = 48 * 48  # bpp and ratio buckets are the byte buckets at the standard face size


def size_buckets(
    lo: int = FINE_BYTES_RANGE[0],
    hi: int = FINE_BYTES_RANGE[1],
    steps_per_octave: int = FINE_STEPS_PER_OCTAVE,
) -> tuple[int, ...]:
    """Whole-byte bounds lo * 2^(i/steps) up to hi, plus 16 (the header alone) and 2048,
    4096 above; anything larger lands in +Inf."""
    n = round(math.log2(hi / lo) * steps_per_octave)
    fine = {round(lo * 2 ** (i / steps_per_octave)) for i in range(n + 1)}
    return tuple(sorted({16, *fine, 2048, 4096}))


def _ceil4(x: float) -> float:
    """Up to 4 decimals, never below ``x``: a face of exactly a byte bound lands in the
    matching bpp bucket (neighbouring whole-byte sizes differ by far more than 1e-4)."""
    return math.ceil(round(x * 1e4, 6)) / 1e4


BYTES_BUCKETS = size_buckets()
BPP_BUCKETS = tuple(_ceil4(8 * b / FACE_PIXELS) for b in BYTES_BUCKETS)
RATIO_BUCKETS = tuple(sorted(_ceil4(FACE_PIXELS / b) for b in BYTES_BUCKETS))

# Every label value known in advance is exported at 0 from start-up (see ``_create_series``).
TRANSPORTS = ("grpc", "grpc_stream", "http")
SWAP_RESULTS = ("success", "unchanged", "rollback")  # the outcomes; refusals carry error codes
MODEL_KINDS = ("codec", "classifier")
FLEET_GENERATIONS = ("desired", "applied")
# success; failed (refused: the replica keeps its models, retries after fleet_retry_s); busy
# (another swap was running on the replica: retried at the next poll)
FLEET_APPLY_RESULTS = ("success", "failed", "busy")
E = TypeVar("E", bound=Exception)


def _subclasses(cls: type[E]) -> list[type[E]]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def request_statuses() -> list[str]:
    """``ok`` and every error code a classify request can end with: the bitstream parser's
    error classes, the service's own (SwapError's codes are per instance and only end swaps)
    and ``internal``. Classes are found by subclass walk, so a new error class is exported
    without touching this file."""
    codes = {"ok", INTERNAL, BitstreamError.code}
    codes |= {c.code for c in _subclasses(BitstreamError)}
    codes |= {c.code for c in _subclasses(ServiceError) if not issubclass(c, SwapError)}
    return sorted(codes)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        p = "fercomp"
        self.requests = Counter(
            f"{p}_requests", "Classification requests by transport and outcome "
            "(status is 'ok' or an error code).", ["transport", "status"], registry=r,
        )  # fmt: skip
        self.received_bytes = Counter(
            f"{p}_received_bytes", "Bitstream bytes received (classify payloads).",
            ["transport"], registry=r,
        )  # fmt: skip
        self.bytes_per_face = Histogram(
            f"{p}_bytes_per_face", "Bytes received per classified face (its container, or its "
            "record in a compact stream).",
            buckets=BYTES_BUCKETS, registry=r,
        )  # fmt: skip
        self.bits_per_pixel = Histogram(
            f"{p}_bits_per_pixel", "Container bits per pixel (8 * bytes / (H * W)).",
            buckets=BPP_BUCKETS, registry=r,
        )  # fmt: skip
        self.compression_ratio = Histogram(
            f"{p}_compression_ratio", "Raw 8-bit pixel bytes (H * W * C) / container bytes.",
            buckets=RATIO_BUCKETS, registry=r,
        )  # fmt: skip
        self.decode_latency = self._latency("decode", "Entropy decode + synthesis per request.")
        self.inference_latency = self._latency("inference", "Classifier forward per request.")
        self.queue_latency = self._latency("queue", "Time from submit to batch start.")
        self.total_latency = self._latency("request", "Submit to result, per request.")
        self.batch_size = Histogram(
            f"{p}_batch_size", "Requests per executed batch.", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(f"{p}_queue_depth", "Requests waiting for a batch.", registry=r)
        self.streams_open = Gauge(
            f"{p}_grpc_streams_open", "ClassifyStream calls holding an admission slot.", registry=r
        )
        self.requests_in_flight = Gauge(
            f"{p}_requests_in_flight", "Classify requests (faces, all transports) admitted and "
            "not yet answered: the autoscaling signal.", registry=r,
        )  # fmt: skip
        self.predictions = Counter(
            f"{p}_predictions", "Predictions by predicted expression.", ["expression"],
            registry=r,
        )  # fmt: skip
        self.labelled = Counter(
            f"{p}_labelled", "Predictions that received a ground-truth label.",
            ["classifier_version"], registry=r,
        )  # fmt: skip
        self.correct = Counter(
            f"{p}_correct", "Labelled predictions whose expression matched the label.",
            ["classifier_version"], registry=r,
        )  # fmt: skip
        self.model_info = Gauge(
            f"{p}_model_info", "Loaded models (value 1); active=\"true\" marks the serving ones.",
            ["kind", "name", "version", "codec_id", "active"], registry=r,
        )  # fmt: skip
        self.swaps = Counter(
            f"{p}_swaps", "Model swaps/rollbacks by result (success, rollback, or error code).",
            ["kind", "result"], registry=r,
        )  # fmt: skip
        self.store_dropped = Counter(
            f"{p}_store_dropped",
            "Predictions refused (resource_exhausted) because the store's write queue was full.",
            registry=r,
        )  # fmt: skip
        self.store_errors = Counter(
            f"{p}_store_errors", "Store operations that failed (answered store_unavailable): "
            "prediction writes, reads and fleet calls, by why.", ["op", "reason"], registry=r,
        )  # fmt: skip
        self._fleet_metrics()
        self._create_series()

    def _fleet_metrics(self) -> None:
        """This replica's view of the fleet (service/fleet): each replica exports its own, and
        Prometheus tells them apart by scrape target."""
        p, r = "fercomp", self.registry
        self.fleet_generation = Gauge(
            f"{p}_fleet_generation", "Rollout generation: the newest desired (kind=\"desired\") "
            "and the one this replica last applied (kind=\"applied\"); 0: none.",
            ["kind"], registry=r,
        )  # fmt: skip
        self.fleet_converged = Gauge(
            f"{p}_fleet_converged", "1 while this replica serves the newest desired models "
            "(or no rollout was ever made), else 0 (applying, failed, diverged, or not "
            "following rollouts).", registry=r,
        )  # fmt: skip
        self.fleet_applies = Counter(
            f"{p}_fleet_applies", "Attempts of this replica to apply a rollout, by result.",
            ["result"], registry=r,
        )  # fmt: skip
        self.fleet_state_errors = Counter(
            f"{p}_fleet_state_errors", "Polls of the fleet state (desired models, heartbeat) "
            "that failed (store unreachable).", registry=r,
        )  # fmt: skip

    def _create_series(self) -> None:
        """Export every known label combination at 0 from start-up.

        A series that appears with its first event has no earlier sample: rate()/increase()
        drop that first increment and then extrapolate from a wrong base (issue 14: an error
        ratio of 0.063 for a true 0.130). Starting at 0, the first event is an ordinary
        increase. Classifier versions follow in ``set_models``, as they load.
        """
        for transport in TRANSPORTS:
            self.received_bytes.labels(transport=transport)
            for status in request_statuses():
                self.requests.labels(transport=transport, status=status)
        for e in EXPRESSIONS:
            self.predictions.labels(expression=e)
        for kind in MODEL_KINDS:
            for result in SWAP_RESULTS:
                self.swaps.labels(kind=kind, result=result)
        for op in STORE_OPS:
            for reason in STORE_ERROR_REASONS:
                self.store_errors.labels(op=op, reason=reason)
        for gen in FLEET_GENERATIONS:
            self.fleet_generation.labels(kind=gen)
        for result in FLEET_APPLY_RESULTS:
            self.fleet_applies.labels(result=result)

    def _latency(self, what: str, doc: str) -> Histogram:
        return Histogram(
            f"fercomp_{what}_latency_seconds", doc, buckets=LATENCY_BUCKETS, registry=self.registry
        )

    # -- engine observer ------------------------------------------------------------------
    def on_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def on_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    # -- request path ---------------------------------------------------------------------
    def count_request(self, transport: str, status: str) -> None:
        self.requests.labels(transport=transport, status=status).inc()

    def received(self, transport: str, nbytes: int) -> None:
        self.received_bytes.labels(transport=transport).inc(nbytes)

    def observe_prediction(self, p: Prediction) -> None:
        n = max(p.received_bytes, 1)
        self.bytes_per_face.observe(p.received_bytes)
        self.bits_per_pixel.observe(8.0 * n / (p.height * p.width))
        self.compression_ratio.observe(p.height * p.width * p.channels / n)
        self.decode_latency.observe(p.decode_ms / 1e3)
        self.inference_latency.observe(p.inference_ms / 1e3)
        self.queue_latency.observe(p.queue_ms / 1e3)
        self.total_latency.observe(p.total_ms / 1e3)
        self.predictions.labels(expression=p.expression_name).inc()
        if p.label is not None:
            self.observe_label(p.classifier_version, p.expression, p.label)

    def observe_label(self, classifier_version: str, predicted: int, label: int) -> None:
        self.labelled.labels(classifier_version=classifier_version).inc()
        c = self.correct.labels(classifier_version=classifier_version)
        c.inc(1 if predicted == label else 0)  # inc(0) creates it (a version since unloaded)

    # -- models ---------------------------------------------------------------------------
    def set_models(self, models: Iterable[tuple[ModelDescription, bool]]) -> None:
        """Called at load and after every swap/rollback with all models held in memory."""
        self.model_info.clear()
        for m, active in models:
            if m.kind == "classifier":  # accuracy series exist before the first label
                self.labelled.labels(classifier_version=m.ref)
                self.correct.labels(classifier_version=m.ref)
            self.model_info.labels(
                kind=m.kind, name=m.name, version=m.version, codec_id=m.codec_id or "",
                active="true" if active else "false",
            ).set(1)  # fmt: skip

    def on_swap(self, kind: str, result: str) -> None:
        self.swaps.labels(kind=kind, result=result).inc()

    def on_store_error(self, op: str, reason: str, n: int = 1) -> None:
        self.store_errors.labels(op=op, reason=reason).inc(n)

    # -- fleet (service.fleet.converger.FleetObserver) -------------------------------------
    def on_fleet_poll(self, desired: int, applied: int, converged: bool) -> None:
        self.fleet_generation.labels(kind="desired").set(desired)
        self.fleet_generation.labels(kind="applied").set(applied)
        self.fleet_converged.set(1 if converged else 0)

    def on_fleet_apply(self, result: str) -> None:
        self.fleet_applies.labels(result=result).inc()

    def on_fleet_state_error(self) -> None:
        self.fleet_state_errors.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
