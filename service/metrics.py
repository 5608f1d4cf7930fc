"""Prometheus metrics (own ``CollectorRegistry`` per server; histograms, never summaries).

Every metric is documented in docs/METRICS.md with the PromQL that turns it into bandwidth
and accuracy numbers. Label values are bounded: transports, error codes, expression names,
model refs - never request or client ids.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from core.artifacts import Manifest
from core.classifier import EXPRESSIONS
from service.model_api import Prediction

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BYTES_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048, 4096)
BPP_BUCKETS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0)
RATIO_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 500, 1000)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


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
            f"{p}_bytes_per_face", "Container size per classified face, bytes.",
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
        for e in EXPRESSIONS:  # export zeros so rate() works from the first scrape
            self.predictions.labels(expression=e)

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
        c.inc(1 if predicted == label else 0)  # inc(0) creates the series: accuracy 0 shows

    # -- models ---------------------------------------------------------------------------
    def set_models(self, models: Iterable[tuple[Manifest, bool]]) -> None:
        self.model_info.clear()
        for m, active in models:
            self.model_info.labels(
                kind=m.kind, name=m.name, version=m.version, codec_id=m.codec_id or "",
                active="true" if active else "false",
            ).set(1)  # fmt: skip

    def on_swap(self, kind: str, result: str) -> None:
        self.swaps.labels(kind=kind, result=result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
