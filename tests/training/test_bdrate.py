"""Bjøntegaard deltas on synthetic curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.bdrate import bd_metric, bd_rate, pareto_front

RATES = [100.0, 200.0, 400.0, 800.0, 1600.0]
ACC = [0.40, 0.52, 0.60, 0.65, 0.67]  # concave, increasing, like an accuracy-rate curve


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize(("factor", "expected"), [(0.5, -50.0), (2.0, 100.0), (1.0, 0.0)])
def test_scaled_rates_give_exact_bd_rate(method: str, factor: float, expected: float) -> None:
    b_rates = [r * factor for r in RATES]
    assert bd_rate(RATES, ACC, b_rates, ACC, method=method) == pytest.approx(expected, abs=1e-9)


def test_bd_rate_is_antisymmetric_in_log_domain() -> None:
    b_rates = [r * 0.7 for r in RATES]
    ab = bd_rate(RATES, ACC, b_rates, ACC)
    ba = bd_rate(b_rates, ACC, RATES, ACC)
    assert ab is not None and ba is not None
    assert math.log1p(ab / 100) == pytest.approx(-math.log1p(ba / 100))


def test_partial_overlap_and_two_points() -> None:
    # B only spans part of A's accuracy range and has just two points: still defined. A's
    # log-rate is linear in accuracy, so every interpolation reproduces it exactly.
    a_rates, a_acc = [100.0, 200.0, 400.0, 800.0], [0.4, 0.5, 0.6, 0.7]
    b_rates, b_acc = [50.0, 100.0], [0.5, 0.6]  # A's rates at 0.5 and 0.6, divided by 4
    for method in ("pchip", "cubic"):
        got = bd_rate(a_rates, a_acc, b_rates, b_acc, method=method)  # type: ignore[arg-type]
        assert got == pytest.approx(-75.0)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_undefined_cases_return_none(method: str) -> None:
    assert bd_rate(RATES, ACC, [10.0], [0.5], method=method) is None  # one point
    assert bd_rate(RATES, ACC, [10.0, 20.0], [0.9, 0.95], method=method) is None  # no overlap
    assert bd_rate(RATES, ACC, [10.0, 20.0], [0.5, 0.5], method=method) is None  # flat
    assert bd_rate([], [], RATES, ACC, method=method) is None


def test_shifted_accuracy_gives_bd_metric() -> None:
    b_acc = [a + 0.05 for a in ACC]
    assert bd_metric(RATES, ACC, RATES, b_acc) == pytest.approx(0.05)
    assert bd_metric(RATES, ACC, RATES, b_acc, method="cubic") == pytest.approx(0.05)


def test_pareto_front_drops_dominated_points() -> None:
    rate = np.array([100.0, 200.0, 300.0, 300.0, 400.0])
    acc = np.array([0.50, 0.48, 0.55, 0.60, 0.59])
    r, a = pareto_front(rate, acc)
    assert r.tolist() == [100.0, 300.0]
    assert a.tolist() == [0.50, 0.60]


def test_noisy_curve_still_gives_exact_answer_on_front() -> None:
    # A dominated (noisy) point in B must not change the answer.
    b_rates = [r * 0.5 for r in RATES] + [500.0]
    b_acc = [*ACC, 0.45]
    assert bd_rate(RATES, ACC, b_rates, b_acc) == pytest.approx(-50.0)


def test_bad_input_shapes() -> None:
    with pytest.raises(ValueError, match="same length"):
        bd_rate([1.0, 2.0], [0.1], RATES, ACC)
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_rate(RATES, ACC, RATES, ACC, method="spline")  # type: ignore[arg-type]
