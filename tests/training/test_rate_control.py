"""The rate controller behind ``target_bpp`` (training/rate_control.py)."""

from __future__ import annotations

import math

import pytest
import torch

from training.rate_control import (
    LAMBDA_R_MAX,
    LAMBDA_R_MIN,
    RateController,
    rate_constrained_score,
)


def test_lambda_r_rises_over_the_target_and_falls_under_it() -> None:
    rc = RateController(lambda_r=2.0, target_bpp=0.2, gain=0.1)
    assert rc.update(0.3) == pytest.approx(2.0 * math.exp(0.1 * 0.5))  # 50 % over
    rc = RateController(lambda_r=2.0, target_bpp=0.2, gain=0.1)
    assert rc.update(torch.tensor(0.1)) == pytest.approx(2.0 * math.exp(-0.1 * 0.5))
    assert rc.update(0.2) == pytest.approx(2.0 * math.exp(-0.05))  # on target: unchanged


def test_the_controller_settles_a_rate_that_falls_with_lambda_r() -> None:
    """A toy codec whose rate is 0.5 / lambda_r: dual ascent finds lambda_r = 2.5 for 0.2 bpp."""
    rc = RateController(lambda_r=1.0, target_bpp=0.2, gain=0.05)
    for _ in range(2000):
        rc.update(0.5 / rc.lambda_r)
    assert rc.lambda_r == pytest.approx(2.5, rel=1e-3)


def test_lambda_r_stays_in_its_band() -> None:
    rc = RateController(lambda_r=1.0, target_bpp=0.1, gain=1.0)
    for _ in range(100):
        rc.update(10.0)
    assert rc.lambda_r == pytest.approx(LAMBDA_R_MAX)
    for _ in range(100):
        rc.update(0.0)
    assert rc.lambda_r == pytest.approx(LAMBDA_R_MIN)


def test_state_round_trips_so_a_resumed_run_continues() -> None:
    rc = RateController(lambda_r=1.0, target_bpp=0.2)
    for _ in range(10):
        rc.update(0.4)
    fresh = RateController(lambda_r=1.0, target_bpp=0.2)
    fresh.load_state_dict(rc.state_dict())
    assert fresh.lambda_r == rc.lambda_r != 1.0


@pytest.mark.parametrize(
    ("lambda_r", "target", "gain"), [(0.0, 0.2, 0.01), (1.0, 0.0, 0.01), (1.0, 0.2, 0.0)]
)
def test_bad_settings_are_refused(lambda_r: float, target: float, gain: float) -> None:
    with pytest.raises(ValueError):
        RateController(lambda_r, target, gain)


def test_selection_prefers_an_epoch_that_held_the_rate() -> None:
    held = rate_constrained_score(acc=0.57, bpp=0.195, target_bpp=0.2)
    missed = rate_constrained_score(acc=0.60, bpp=0.21, target_bpp=0.2)  # 5 % over
    assert held == 0.57 and held > missed
    # under the target, the more accurate epoch wins whatever its rate
    assert rate_constrained_score(0.58, 0.15, 0.2) > rate_constrained_score(0.57, 0.199, 0.2)
    # all over: the closest one wins at equal accuracy
    assert rate_constrained_score(0.6, 0.202, 0.2) > rate_constrained_score(0.6, 0.22, 0.2)
