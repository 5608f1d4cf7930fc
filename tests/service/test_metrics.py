"""/metrics values follow known traffic (parsed with prometheus_client's parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from proto.fercomp.v1 import fercomp_pb2 as pb
from service.metrics import TRANSPORTS, request_statuses
from tests.service.conftest import SettingsFactory, metric, running


def test_metrics_track_known_traffic(
    make_settings: SettingsFactory, payloads_v1: list[bytes]
) -> None:
    with running(make_settings()) as live:
        start = live.metrics()
        assert metric(start, "fercomp_requests_total") == 0
        assert metric(start, "fercomp_model_info", kind="codec", active="true") == 1
        sent = payloads_v1[:5]
        for p in sent[:3]:
            live.stub.Classify(pb.ClassifyRequest(bitstream=p))
        for p in sent[3:]:
            assert live.http.post("/v1/classify", content=p, params={"label": 0}).status_code == 200
        live.http.post("/v1/classify", content=b"FR\x09")  # unsupported version
        text = live.metrics()

    assert metric(text, "fercomp_requests_total", transport="grpc", status="ok") == 3
    assert metric(text, "fercomp_requests_total", transport="http", status="ok") == 2
    assert metric(text, "fercomp_requests_total", status="unsupported_version") == 1
    assert metric(text, "fercomp_received_bytes_total") == sum(map(len, sent)) + 3
    assert metric(text, "fercomp_bytes_per_face_count") == 5
    assert metric(text, "fercomp_bytes_per_face_sum") == sum(map(len, sent))
    bpp = sum(8 * len(p) / (48 * 48) for p in sent)
    assert abs(metric(text, "fercomp_bits_per_pixel_sum") - bpp) < 1e-9
    ratio = sum(48 * 48 / len(p) for p in sent)
    assert abs(metric(text, "fercomp_compression_ratio_sum") - ratio) < 1e-6
    assert metric(text, "fercomp_predictions_total") == 5
    for name in ("decode", "inference", "queue", "request"):
        assert metric(text, f"fercomp_{name}_latency_seconds_count") == 5
    assert metric(text, "fercomp_batch_size_sum") == 5
    assert metric(text, "fercomp_labelled_total", classifier_version="tiny-classifier/1") == 2
    assert metric(text, "fercomp_queue_depth") == 0
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert "summary" not in types.values()
    assert types["fercomp_request_latency_seconds"] == "histogram"


def test_known_label_values_are_exported_at_zero_from_start(
    make_settings: SettingsFactory,
) -> None:
    """Before any request every transport x status, every transport's bytes and the loaded
    classifier's accuracy counters exist at 0, so rate() counts their first event."""
    with running(make_settings()) as live:
        text = live.metrics()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    statuses = request_statuses()
    assert {"ok", "internal", "bad_magic", "truncated", "resource_exhausted"} <= set(statuses)
    for transport in TRANSPORTS:
        key = ("fercomp_received_bytes_total", (("transport", transport),))
        assert samples[key] == 0
        for status in statuses:
            key = ("fercomp_requests_total", (("status", status), ("transport", transport)))
            assert samples[key] == 0, key
    for name in ("fercomp_labelled_total", "fercomp_correct_total"):
        assert samples[(name, (("classifier_version", "tiny-classifier/1"),))] == 0


def test_a_swapped_in_classifier_gets_its_accuracy_series(
    make_settings: SettingsFactory,
) -> None:
    with running(make_settings()) as live:
        live.state.registry.swap("classifier", "tiny-classifier/2")
        text = live.metrics()
    assert "tiny-classifier/2" in {
        s.labels.get("classifier_version")
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "fercomp_labelled_total"
    }
    assert metric(text, "fercomp_swaps_total", kind="codec", result="success") == 0
    assert metric(text, "fercomp_swaps_total", kind="classifier", result="success") == 1
