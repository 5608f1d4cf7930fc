"""The documented metric families: the one list the docs table and the deploy checks read.

``service/metrics.py`` creates the Prometheus objects; this module says, for each family,
what a reader needs: its labels with their values and what it measures. It imports nothing
heavy (no torch, no prometheus_client), so the doc generator (scripts/gen_metrics_doc.py) and
the static deploy checks (tests/deploy/test_deploy_files.py) read it without starting a
server; tests/service/test_metric_catalog.py checks it against a real ``Metrics()`` registry
(names, types, label names), so a metric added there without an entry here fails by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "histogram"]

#: The series a family exposes, by type (``_created``: prometheus-client's timestamps).
SERIES_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


@dataclass(frozen=True)
class MetricDoc:
    name: str  # the family, as passed to prometheus_client (no _total)
    type: MetricType
    meaning: str  # markdown, one sentence or two
    labels: tuple[tuple[str, str], ...] = ()  # (label, its values in markdown, or "")
    type_note: str = ""  # after the type in the table, e.g. "(=1)"

    @property
    def exposed_name(self) -> str:
        """The name a reader queries: counters carry ``_total``."""
        return self.name + ("_total" if self.type == "counter" else "")

    @property
    def series(self) -> tuple[str, ...]:
        return tuple(self.name + s for s in SERIES_SUFFIXES[self.type])

    def table_row(self) -> str:
        labels = ", ".join(f"`{k}` ({v})" if v else f"`{k}`" for k, v in self.labels)
        kind = f"{self.type} {self.type_note}".strip()
        return f"| `{self.exposed_name}` | {kind} | {labels} | {self.meaning} |".replace(
            "|  |", "| |"
        )


def _latency(stage: str, meaning: str) -> MetricDoc:
    return MetricDoc(f"fercomp_{stage}_latency_seconds", "histogram", meaning)


CATALOG: tuple[MetricDoc, ...] = (
    MetricDoc(
        "fercomp_requests",
        "counter",
        "Classification requests by outcome; each stream item counts once.",
        (
            ("transport", "`grpc`, `grpc_stream`, `http`"),
            ("status", "`ok` or an error code, see SERVING.md"),
        ),
    ),
    MetricDoc(
        "fercomp_received_bytes",
        "counter",
        "Bitstream bytes received by classify calls (including rejected ones).",
        (("transport", ""),),
    ),
    MetricDoc(
        "fercomp_bytes_per_face",
        "histogram",
        "Bytes the client sent for each classified face: its container, or its record in a "
        "compact stream ([BITSTREAM](BITSTREAM.md#compact-stream-framing)), bytes "
        "(buckets: see [Size buckets](#size-buckets)).",
    ),
    MetricDoc(
        "fercomp_bits_per_pixel",
        "histogram",
        "`8 * bytes / (H * W)` per classified face (the byte buckets at 48×48).",  # noqa: RUF001 (as the doc writes it)
    ),
    MetricDoc(
        "fercomp_compression_ratio",
        "histogram",
        "Raw 8-bit pixels (`H * W * C`) / container bytes (the byte buckets at 48×48).",  # noqa: RUF001 (as the doc writes it)
    ),
    _latency(
        "decode",
        "Entropy decoding + synthesis as experienced by each request "
        "(time of its (codec, size) group).",
    ),
    _latency("inference", "Classifier forward pass per request (time of its group)."),
    _latency("queue", "Submit → start of the request's batch."),
    _latency("request", "Submit → result, per successful request."),
    MetricDoc("fercomp_batch_size", "histogram", "Requests per executed batch (1 … 256)."),
    MetricDoc(
        "fercomp_queue_depth", "gauge", "Requests waiting for a batch (exact at scrape time)."
    ),
    MetricDoc(
        "fercomp_predictions",
        "counter",
        "Predictions by predicted class (all 7 exported from start).",
        (("expression", ""),),
    ),
    MetricDoc(
        "fercomp_labelled",
        "counter",
        "Predictions that got ground truth, in the request (`label`) or later via "
        "`POST /v1/predictions/{id}/label`.",
        (("classifier_version", ""),),
    ),
    MetricDoc(
        "fercomp_correct",
        "counter",
        "Of those, predictions equal to the label.",
        (("classifier_version", ""),),
    ),
    MetricDoc(
        "fercomp_model_info",
        "gauge",
        "Loaded models; follows swaps and rollbacks.",
        (
            ("kind", ""),
            ("name", ""),
            ("version", ""),
            ("codec_id", ""),
            ("active", "`true`/`false`"),
        ),
        type_note="(=1)",
    ),
    MetricDoc(
        "fercomp_swaps",
        "counter",
        "Swap and rollback attempts.",
        (
            ("kind", ""),
            (
                "result",
                "`success`, `unchanged`, `rollback`, or an error code such as "
                "`invalid_artifact`, `accuracy_regression`, `nothing_to_rollback`",
            ),
        ),
    ),
    MetricDoc(
        "fercomp_store_dropped",
        "counter",
        "Requests refused (`resource_exhausted`) because the store's write queue was full; "
        "nothing is acknowledged without being stored.",
    ),
    MetricDoc(
        "fercomp_store_errors",
        "counter",
        "Store operations that failed, answered `store_unavailable` (503 / UNAVAILABLE): each "
        "prediction write, read or fleet-state call counts once "
        "([RELIABILITY](RELIABILITY.md#connection-loss)).",
        (
            ("op", "`write`, `read`, `fleet`"),
            (
                "reason",
                "`connection` (database unreachable or connection lost), `timeout`, "
                "`database` (it refused the statement)",
            ),
        ),
    ),
    MetricDoc(
        "fercomp_grpc_streams_open",
        "gauge",
        "`ClassifyStream` calls holding an admission slot (at most `max_streams`).",
    ),
    MetricDoc(
        "fercomp_requests_in_flight",
        "gauge",
        "Classify requests admitted (queued on the engine) and not yet answered, one per face, "
        "all transports; the per-pod load signal the Kubernetes HPA scales on "
        "([DEPLOY](DEPLOY.md#kubernetes)).",
    ),
    MetricDoc(
        "fercomp_fleet_generation",
        "gauge",
        "Rollout generations as this replica sees them ([DEPLOY](DEPLOY.md#rolling-out-a-model-"
        "to-the-fleet)): the newest desired one and the one it last applied (0: none).",
        (("kind", "`desired`, `applied`"),),
    ),
    MetricDoc(
        "fercomp_fleet_converged",
        "gauge",
        "1 while this replica serves the newest desired models (or none was ever rolled out); "
        "0 while it applies them, after it failed to, after a local swap made it diverge, or "
        "when it does not follow rollouts (`fleet_enabled=false`).",
    ),
    MetricDoc(
        "fercomp_fleet_applies",
        "counter",
        "This replica's attempts to apply a rollout.",
        (
            (
                "result",
                "`success`; `failed` (refused: the replica keeps serving its models and "
                "retries after `fleet_retry_s`); `busy` (a local swap was running: next poll)",
            ),
        ),
    ),
    MetricDoc(
        "fercomp_fleet_state_errors",
        "counter",
        "Polls that could not read the desired models or write this replica's report (store "
        "unreachable); the replica keeps serving and polls again.",
    ),
)

TABLE_HEADER = "| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n"


def markdown_table() -> str:
    """docs/METRICS.md's reference table, one row per family in catalogue order."""
    return TABLE_HEADER + "".join(m.table_row() + "\n" for m in CATALOG)
