from __future__ import annotations

import math

import pytest

from training.report_tables import bytes_for_accuracy, pareto, rate_lines, uncompressed_lines


def test_pareto_drops_dominated_points() -> None:
    pts = [(300.0, 0.50), (100.0, 0.40), (200.0, 0.55), (400.0, 0.54)]
    assert pareto(pts) == [(100.0, 0.40), (200.0, 0.55)]


def test_bytes_for_accuracy_interpolates_in_log_bytes() -> None:
    pts = [(100.0, 0.40), (400.0, 0.60)]
    assert bytes_for_accuracy(pts, 0.50) == pytest.approx(200.0)  # geometric midpoint
    assert bytes_for_accuracy(pts, 0.30) == 100.0  # already reached by the cheapest point
    assert bytes_for_accuracy(pts, 0.60) == pytest.approx(400.0)
    assert bytes_for_accuracy(pts, 0.61) is None


def test_rate_lines_marks_unreached_targets() -> None:
    curves = {"webp": ([200.0, 300.0], [0.55, 0.62]), "joint": ([100.0, 250.0], [0.50, 0.56])}
    lines = rate_lines(curves, reference=0.64)
    assert lines[0].startswith("| family | ≥ 63.0% (-1 pt)")
    joint = next(line for line in lines if line.startswith("| joint"))
    webp = next(line for line in lines if line.startswith("| webp"))
    assert joint.split("|")[2].strip() == "not reached"
    # webp reaches 61% (-3 pt) between its two points
    expected = math.exp(math.log(200) + (0.61 - 0.55) / 0.07 * math.log(1.5))
    assert webp.split("|")[3].strip() == f"{expected:.0f} B"
    # -15 pt (49%) is below joint's cheapest point: only an upper bound is known
    assert joint.split("|")[6].strip() == "≤ 100 B"


def test_uncompressed_lines() -> None:
    records = [
        {
            "codec": "none",
            "accuracy": {"b/1": 0.64, "a/1": 0.60},
            "macro_f1": {"b/1": 0.5},
            "accuracy_tta": {"b/1": 0.65},
            "mirror_agreement": {"b/1": 0.97},
        },
        {"codec": "learned", "accuracy": {"b/1": 0.1}},
    ]
    lines = uncompressed_lines(records, primary="b/1")
    assert lines[2] == "| b/1 | 0.6400 | — | 0.5000 | 0.6500 | 0.9700 |"
    assert lines[3] == "| a/1 | 0.6000 | -4.0 pt | n/a | n/a | n/a |"
    assert "No uncompressed" in uncompressed_lines(records[1:], "b/1")[0]


def test_uncompressed_lines_leave_out_served_columns_no_eval_file_has() -> None:
    """Eval files from before flip TTA keep their four-column table when a report is redone."""
    records = [{"codec": "none", "accuracy": {"b/1": 0.64}, "macro_f1": {"b/1": 0.5}}]
    lines = uncompressed_lines(records, primary="b/1")
    assert lines[0] == "| classifier | accuracy | vs primary | macro-F1 |"
    assert lines[1] == "|---|---:|---:|---:|"
    assert lines[2] == "| b/1 | 0.6400 | — | 0.5000 |"
