"""The one list: every PromQL expression the project ships -> its exact value for known traffic.

Keys are ``promql_queries.key`` normal forms. test_prometheus_live fails for a shipped query
without an entry here and for an entry nothing ships, so a new metric or panel shows up as
"add its truth". A truth gets ``(traffic, window_s)`` (the expression's range window, the
whole traffic inside it) and returns ``{label key: value}``: every key must come back within
``tol``, any other series must be 0 (the series the server exports at 0 from start-up). None
means "no series at all" (an alert that is not firing).

Queries over counters are exact when evaluated at a scrape's timestamp with all traffic in
the window (see docs/METRICS.md); size quantiles carry the bucket interpolation error.
Latency and batch figures are not knowable by a client: their truth is the server's own
/metrics after the traffic, put through Prometheus's histogram_quantile algorithm.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from service.store.base import STORE_ERROR_REASONS, STORE_OPS

RATE_TOL = 0.01  # counters and ratios of counters (float rounding only, in practice)
QUANTILE_TOL = 0.05  # histogram_quantile of face sizes (docs/METRICS.md: bucket fit)
PIXELS = 48 * 48  # every test face
IGNORED_LABELS = ("__name__", "instance", "job")

Values = dict[str, float] | None


def label_key(labels: Mapping[str, str]) -> str:
    """``k=v,...`` sorted; empty values dropped as Prometheus drops them on ingestion."""
    return ",".join(
        f"{k}={v}" for k, v in sorted(labels.items()) if k not in IGNORED_LABELS and v != ""
    )


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus 2.42's bucketQuantile (promql/quantile.go) on cumulative (le, count)
    pairs, +Inf included: linear inside the bucket that holds rank q * count."""
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    b = next((i for i, (_, c) in enumerate(buckets[:-1]) if c >= rank), len(buckets) - 1)
    if b == len(buckets) - 1:  # in +Inf: the highest finite bound
        return buckets[-2][0]
    start, below = (0.0, 0.0) if b == 0 else buckets[b - 1]
    return start + (buckets[b][0] - start) * (rank - below) / (buckets[b][1] - below)


@dataclass
class Traffic:
    """What the test sent and got back, plus the server's /metrics text afterwards."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (transport, status)
    received: Counter[str] = field(default_factory=Counter)  # transport -> bytes
    sizes: list[int] = field(default_factory=list)  # bytes of each classified face
    predicted: Counter[str] = field(default_factory=Counter)  # expression name
    labelled: Counter[str] = field(default_factory=Counter)  # classifier version
    correct: Counter[str] = field(default_factory=Counter)
    server_metrics: str = ""

    def samples(self, name: str) -> dict[str, float]:
        return {
            label_key(s.labels): s.value
            for f in text_string_to_metric_families(self.server_metrics)
            for s in f.samples
            if s.name == name
        }

    def server_quantile(self, q: float, family: str) -> float:
        buckets = [(float(le), c) for k, c in self.samples(family + "_bucket").items()
                   for le in [k.removeprefix("le=")]]  # fmt: skip
        return bucket_quantile(q, buckets)

    def server_mean(self, family: str) -> float:
        return self.samples(family + "_sum")[""] / self.samples(family + "_count")[""]

    def size_quantile(self, q: float, scale: Callable[[np.ndarray], np.ndarray]) -> float:
        return float(np.quantile(scale(np.array(self.sizes, float)), q))


def _bytes(x: np.ndarray) -> np.ndarray:
    return x


def _bpp(x: np.ndarray) -> np.ndarray:
    return 8 * x / PIXELS


def _ratio(x: np.ndarray) -> np.ndarray:
    return PIXELS / x


def _total(counts: Mapping[str, float] | Counter[tuple[str, str]]) -> float:
    return float(sum(counts.values()))


def _by_status(t: Traffic) -> dict[str, float]:
    out: Counter[str] = Counter()
    for (_, status), n in t.requests.items():
        if status != "ok":
            out[f"status={status}"] += n
    return dict(out)


def _by_transport(t: Traffic) -> dict[str, float]:
    out: Counter[str] = Counter()
    for (transport, _), n in t.requests.items():
        out[f"transport={transport}"] += n
    return dict(out)


def _accuracy(t: Traffic, w: float | None) -> Values:
    return {f"classifier_version={v}": t.correct[v] / n for v, n in t.labelled.items()}


def _labelled(t: Traffic, w: float | None) -> Values:
    return {f"classifier_version={v}": float(n) for v, n in t.labelled.items()}


def _per_s(values: Mapping[str, float], w: float | None) -> dict[str, float]:
    assert w is not None
    return {k: v / w for k, v in values.items()}


def _error_ratio(t: Traffic, w: float | None) -> Values:
    errors = sum(n for (_, s), n in t.requests.items() if s != "ok")
    return {"": errors / _total(t.requests)}


def _size(q: float, scale: Callable[[np.ndarray], np.ndarray]) -> Expect:
    return Expect(lambda t, w: {"": t.size_quantile(q, scale)}, QUANTILE_TOL)


def _mean(scale: Callable[[np.ndarray], np.ndarray]) -> Expect:
    return Expect(lambda t, w: {"": float(scale(np.array(t.sizes, float)).mean())})


def _latency(q: float, stage: str) -> Expect:
    name = f"fercomp_{stage}_latency_seconds"
    return Expect(lambda t, w: {"": t.server_quantile(q, name)})


@dataclass(frozen=True)
class Expect:
    truth: Callable[[Traffic, float | None], Values]
    tol: float = RATE_TOL


BANDWIDTH = Expect(lambda t, w: _per_s({"": _total(t.received)}, w))
ACCURACY = Expect(_accuracy)
LABELLED = Expect(_labelled)
ERROR_RATIO = Expect(_error_ratio)
MEAN_BATCH = Expect(lambda t, w: {"": t.server_mean("fercomp_batch_size")})
NOT_FIRING = Expect(lambda t, w: None)
# No swap in the traffic: the series exported at start-up, all still 0.
NO_SWAPS = Expect(lambda t, w: {k: 0.0 for k in t.samples("fercomp_swaps_total")})
NO_APPLIES = Expect(lambda t, w: {f"result={r}": 0.0 for r in ("success", "failed", "busy")})
ACTIVE_MODELS = Expect(
    lambda t, w: {k: v for k, v in t.samples("fercomp_model_info").items() if "active=true" in k}
)

CATALOG: dict[str, Expect] = {
    # -- bandwidth and sizes --------------------------------------------------------------------
    "sum(rate(fercomp_received_bytes_total[5m]))": BANDWIDTH,
    "sum(fercomp:bandwidth_bytes_per_second)": BANDWIDTH,
    "sum by (transport) (rate(fercomp_received_bytes_total[5m]))": Expect(
        lambda t, w: _per_s({f"transport={k}": v for k, v in t.received.items()}, w)
    ),
    "histogram_quantile(0.5, sum by (le) (rate(fercomp_bytes_per_face_bucket[5m])))": _size(
        0.5, _bytes
    ),
    "histogram_quantile(0.95, sum by (le) (rate(fercomp_bytes_per_face_bucket[5m])))": _size(
        0.95, _bytes
    ),
    "histogram_quantile(0.5, sum by (le) (rate(fercomp_bits_per_pixel_bucket[5m])))": _size(
        0.5, _bpp
    ),
    "histogram_quantile(0.95, sum by (le) (rate(fercomp_bits_per_pixel_bucket[5m])))": _size(
        0.95, _bpp
    ),
    "histogram_quantile(0.5, sum by (le) (rate(fercomp_compression_ratio_bucket[5m])))": _size(
        0.5, _ratio
    ),
    "sum(rate(fercomp_bytes_per_face_sum[5m])) / sum(rate(fercomp_bytes_per_face_count[5m]))": (
        _mean(_bytes)
    ),
    "sum(rate(fercomp_bits_per_pixel_sum[5m])) / sum(rate(fercomp_bits_per_pixel_count[5m]))": (
        _mean(_bpp)
    ),
    "sum(rate(fercomp_compression_ratio_sum[5m])) / "
    "sum(rate(fercomp_compression_ratio_count[5m]))": _mean(_ratio),
    # -- accuracy -----------------------------------------------------------------------------
    "sum by (classifier_version) (increase(fercomp_correct_total[1h])) / "
    "(sum by (classifier_version) (increase(fercomp_labelled_total[1h])) > 0)": ACCURACY,
    "sum by (classifier_version) (increase(fercomp_correct_total[15m])) / "
    "(sum by (classifier_version) (increase(fercomp_labelled_total[15m])) > 0)": ACCURACY,
    "fercomp:accuracy:ratio_1h": ACCURACY,
    "sum by (classifier_version) (increase(fercomp_labelled_total[1h]))": LABELLED,
    "sum by (classifier_version) (rate(fercomp_labelled_total[5m]))": Expect(
        lambda t, w: _per_s(_labelled(t, w) or {}, w)
    ),
    "sum by (expression) (rate(fercomp_predictions_total[15m]))": Expect(
        lambda t, w: _per_s({f"expression={k}": v for k, v in t.predicted.items()}, w)
    ),
    "sum by (expression) (rate(fercomp_predictions_total[5m]))": Expect(
        lambda t, w: _per_s({f"expression={k}": v for k, v in t.predicted.items()}, w)
    ),
    # -- traffic and errors -------------------------------------------------------------------
    "sum(rate(fercomp_requests_total[5m]))": Expect(
        lambda t, w: _per_s({"": _total(t.requests)}, w)
    ),
    "sum by (transport) (rate(fercomp_requests_total[5m]))": Expect(
        lambda t, w: _per_s(_by_transport(t), w)
    ),
    "sum by (transport, status) (rate(fercomp_requests_total[5m]))": Expect(
        lambda t, w: _per_s(
            {f"status={s},transport={tr}": n for (tr, s), n in t.requests.items()}, w
        )
    ),
    '(sum(rate(fercomp_requests_total{status!="ok"}[5m])) or vector(0)) / '
    "clamp_min(sum(rate(fercomp_requests_total[5m])), 1e-9)": ERROR_RATIO,
    'sum by (status) (rate(fercomp_requests_total{status!="ok"}[5m]))': Expect(
        lambda t, w: _per_s(_by_status(t), w)
    ),
    'sum(rate(fercomp_requests_total{status="resource_exhausted"}[5m]))': Expect(
        lambda t, w: {"": 0.0}
    ),
    # -- latency and batching (truth: the server's own histograms) -----------------------------
    **{
        f"histogram_quantile({q}, sum by (le) "
        f"(rate(fercomp_{stage}_latency_seconds_bucket[5m])))": _latency(q, stage)
        for q in (0.5, 0.95)
        for stage in ("queue", "decode", "inference", "request")
    },
    "histogram_quantile(0.99, sum by (le) (rate(fercomp_request_latency_seconds_bucket[5m])))": (
        _latency(0.99, "request")
    ),
    "fercomp:p95_latency_seconds": _latency(0.95, "request"),
    "sum(rate(fercomp_batch_size_sum[5m])) / sum(rate(fercomp_batch_size_count[5m]))": MEAN_BATCH,
    "sum by (le) (increase(fercomp_batch_size_bucket[5m]))": Expect(
        lambda t, w: t.samples("fercomp_batch_size_bucket")
    ),
    "max(fercomp_queue_depth)": Expect(lambda t, w: {"": 0.0}),
    "fercomp_queue_depth": Expect(lambda t, w: {"": 0.0}),
    # every stream of the traffic has ended: no admission slot is held
    "fercomp_grpc_streams_open": Expect(lambda t, w: {"": 0.0}),
    "sum(fercomp_grpc_streams_open)": Expect(lambda t, w: {"": 0.0}),
    # every request of the traffic has been answered
    "fercomp_requests_in_flight": Expect(lambda t, w: {"": 0.0}),
    "sum(fercomp_requests_in_flight)": Expect(lambda t, w: {"": 0.0}),
    "label_values(fercomp_queue_depth, instance)": Expect(lambda t, w: {"": 1.0}),
    # -- models, swaps, store -----------------------------------------------------------------
    'fercomp_model_info{active="true"}': ACTIVE_MODELS,
    "fercomp_model_info": Expect(lambda t, w: t.samples("fercomp_model_info")),
    "increase(fercomp_swaps_total[1d])": NO_SWAPS,
    "sum by (kind, result) (increase(fercomp_swaps_total[5m]))": NO_SWAPS,
    "sum(increase(fercomp_store_dropped_total[1h]))": Expect(lambda t, w: {"": 0.0}),
    "sum(rate(fercomp_store_dropped_total[5m]))": Expect(lambda t, w: {"": 0.0}),
    # the store answers throughout the traffic: every op/reason series exists and stays 0
    "sum by (op, reason) (increase(fercomp_store_errors_total[1h]))": Expect(
        lambda t, w: {f"op={o},reason={r}": 0.0 for o in STORE_OPS for r in STORE_ERROR_REASONS}
    ),
    "sum by (op) (rate(fercomp_store_errors_total[5m]))": Expect(
        lambda t, w: {f"op={o}": 0.0 for o in STORE_OPS}
    ),
    # -- fleet: no rollout in the traffic; the one replica serves what is desired (nothing) ------
    "fercomp:fleet_converged:ratio": Expect(lambda t, w: {"": 1.0}),
    "sum(fercomp_fleet_converged) / count(fercomp_fleet_converged)": Expect(lambda t, w: {"": 1.0}),
    "fercomp_fleet_converged == 0": NOT_FIRING,
    "fercomp_fleet_converged": Expect(lambda t, w: {"": 1.0}),
    "fercomp_fleet_generation": Expect(lambda t, w: {"kind=desired": 0.0, "kind=applied": 0.0}),
    'max(fercomp_fleet_generation{kind="desired"}) - '
    'min(fercomp_fleet_generation{kind="applied"})': Expect(lambda t, w: {"": 0.0}),
    "sum by (result) (increase(fercomp_fleet_applies_total[5m]))": NO_APPLIES,
    "sum by (result) (increase(fercomp_fleet_applies_total[1h]))": NO_APPLIES,
    "sum(increase(fercomp_fleet_state_errors_total[5m]))": Expect(lambda t, w: {"": 0.0}),
    "sum(increase(fercomp_fleet_state_errors_total[1h]))": Expect(lambda t, w: {"": 0.0}),
    # -- alerts: none fires on healthy traffic with a reachable target --------------------------
    "fercomp:fleet_converged:ratio < 1": NOT_FIRING,
    "fercomp:accuracy:ratio_1h < 0.5 and on (classifier_version) "
    "fercomp:labelled:increase_1h >= 50": NOT_FIRING,
    'up{job=~"fercomp.*"} == 0': NOT_FIRING,
    'absent(up{job=~"fercomp.*"} == 1)': NOT_FIRING,
}
