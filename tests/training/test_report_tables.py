from __future__ import annotations

import math

import pytest

from training.report_tables import (
    BUDGETS,
    budget_lines,
    bytes_for_accuracy,
    equal_bytes_lines,
    pareto,
    rate_lines,
    uncompressed_lines,
    value_at_bytes,
)


def test_pareto_drops_dominated_points() -> None:
    pts = [(300.0, 0.50), (100.0, 0.40), (200.0, 0.55), (400.0, 0.54)]
    assert pareto(pts) == [(100.0, 0.40), (200.0, 0.55)]


def test_bytes_for_accuracy_interpolates_in_log_bytes() -> None:
    pts = [(100.0, 0.40), (400.0, 0.60)]
    assert bytes_for_accuracy(pts, 0.50) == pytest.approx(200.0)  # geometric midpoint
    assert bytes_for_accuracy(pts, 0.30) == 100.0  # already reached by the cheapest point
    assert bytes_for_accuracy(pts, 0.60) == pytest.approx(400.0)
    assert bytes_for_accuracy(pts, 0.61) is None


def test_value_at_bytes_interpolates_in_log_bytes_and_never_extrapolates() -> None:
    pts = [(100.0, 0.40), (400.0, 0.60), (300.0, 0.35)]  # 300 B: dominated, off the curve
    assert value_at_bytes(pts, 200.0) == pytest.approx(0.50)  # geometric midpoint of 100, 400
    assert value_at_bytes(pts, 100.0) == pytest.approx(0.40)
    assert value_at_bytes(pts, 400.0) == pytest.approx(0.60)
    assert value_at_bytes(pts, 99.0) is None and value_at_bytes(pts, 401.0) is None
    assert value_at_bytes([], 100.0) is None
    # past the last Pareto point, up to the largest rate measured: that point's value
    dominated = [(100.0, 0.40), (200.0, 0.60), (400.0, 0.55)]
    assert value_at_bytes(dominated, 300.0) == pytest.approx(0.60)
    # two points at the same rate: the better one, no division by zero
    assert value_at_bytes([(100.0, 0.40), (100.0, 0.45)], 100.0) == pytest.approx(0.45)


def test_budget_lines_one_cell_per_budget_dash_outside_the_range() -> None:
    lines = budget_lines({"webp": ([100.0, 400.0], [0.40, 0.60])}, 100.0, " %")
    assert lines[0] == "| family | " + " | ".join(f"{b:g} B" for b in BUDGETS) + " |"
    cells = [c.strip() for c in lines[2].split("|")[2:-1]]
    assert len(cells) == len(BUDGETS)
    assert cells[BUDGETS.index(80.0)] == "—" and cells[BUDGETS.index(500.0)] == "—"
    assert cells[BUDGETS.index(200.0)] == "50.00 %" and cells[BUDGETS.index(100.0)] == "40.00 %"


def test_equal_bytes_lines_give_each_point_its_lead_at_its_own_bytes() -> None:
    curves = {"webp": ([100.0, 400.0], [0.40, 0.60]), "jpeg": ([300.0, 600.0], [0.5, 0.6])}
    points = [("joint/2", 200.0, 0.55), ("joint/1", 50.0, 0.30)]
    lines = equal_bytes_lines(points, curves, 100.0, " %", " pt")
    assert lines[0] == "| operating point | bytes/face | value | jpeg | webp |"
    # by rate: the 50 B point first, below both codecs' smallest files
    assert lines[2] == "| joint/1 | 50.0 | 30.00 % | — | — |"
    assert lines[3] == "| joint/2 | 200.0 | 55.00 % | — | 50.00 % (+5.00 pt) |"


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
