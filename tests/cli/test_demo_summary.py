"""The demo's Prometheus lines (cli/demo.py metrics_summary) read a real server's exposition."""

from __future__ import annotations

from prometheus_client import generate_latest

from cli.demo import metrics_summary
from service.metrics import Metrics


def test_summary_of_a_fresh_server_says_nothing_happened_yet() -> None:
    lines = metrics_summary(generate_latest(Metrics().registry).decode())
    assert lines[0] == "requests: 0 (0 ok)"
    assert lines[1] == "bandwidth: 0 bytes for 0 faces"
    assert lines[2].startswith("accuracy: no labelled faces yet")


def test_summary_counts_requests_bytes_and_accuracy() -> None:
    text = "\n".join(
        [
            'fercomp_requests_total{status="ok",transport="grpc"} 5.0',
            'fercomp_requests_total{status="corrupt",transport="rest"} 1.0',
            "fercomp_bytes_per_face_count 5.0",
            "fercomp_bytes_per_face_sum 1250.0",
            'fercomp_labelled_total{classifier="c/1"} 4.0',
            'fercomp_correct_total{classifier="c/1"} 3.0',
            'fercomp_predictions_total{expression="happy"} 3.0',
            'fercomp_predictions_total{expression="sad"} 0.0',
            'fercomp_predictions_total{expression="neutral"} 2.0',
        ]
    )
    assert metrics_summary(text + "\n") == [
        "requests: 6 (5 ok)",
        "bandwidth: 1250 bytes for 5 faces (250 B/face)",
        "accuracy: 3/4 labelled faces correct",
        "predictions: happy 3, neutral 2",
    ]
