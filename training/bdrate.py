"""Bjøntegaard delta rate (BD-rate) and delta metric between two rate/quality curves.

BD-rate (G. Bjøntegaard, VCEG-M33, 2001) is the average relative rate difference of curve B
against reference curve A at equal quality: fit log(rate) as a function of the quality metric
for each curve, integrate both fits over the metric interval the curves share, and turn the mean
log difference into a percentage. -30 % means B needs 30 % fewer bytes for the same accuracy.
Here the "quality" is mostly classifier accuracy (the paper's compression efficiency), but any
metric that grows with rate works (PSNR, MS-SSIM).

Two interpolations:
- ``"pchip"`` (default; the piecewise-cubic Hermite fit JVET adopted because the classic cubic
  can oscillate): needs strictly increasing x, so each curve is first reduced to its Pareto
  front (points sorted by rate, keeping those that beat every cheaper point). Accuracy curves
  are noisy and not always monotonic; a codec is judged by its best operating points.
- ``"cubic"``: the original VCEG-M33 least-squares polynomial of degree min(3, n - 1) through
  all points.
Both need at least two points per curve and an overlapping metric range, else return None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Method = Literal["pchip", "cubic"]


def _clean(rate: Sequence[float], metric: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64)
    m = np.asarray(metric, dtype=np.float64)
    if r.shape != m.shape or r.ndim != 1:
        raise ValueError("rate and metric must be 1-D sequences of the same length")
    ok = np.isfinite(r) & np.isfinite(m) & (r > 0)
    return r[ok], m[ok]


def pareto_front(rate: np.ndarray, metric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by rate that improve on every cheaper point (strictly increasing metric)."""
    order = np.lexsort((-metric, rate))  # by rate, best metric first among equal rates
    best = -np.inf
    keep = []
    for i in order:
        if metric[i] > best:
            keep.append(i)
            best = metric[i]
    idx = np.array(keep, dtype=np.int64)
    return rate[idx], metric[idx]


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: Method) -> float:
    """Integral over [lo, hi] of the fit y(x)."""
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator

        return float(PchipInterpolator(x, y).integrate(lo, hi))
    if method == "cubic":
        poly = np.polyint(np.polyfit(x, y, min(3, len(x) - 1)))
        return float(np.polyval(poly, hi) - np.polyval(poly, lo))
    raise ValueError(f"unknown BD method {method!r} (pchip, cubic)")


def _prepare(
    rate: Sequence[float], metric: Sequence[float], method: Method
) -> tuple[np.ndarray, np.ndarray] | None:
    r, m = _clean(rate, metric)
    if method == "pchip":
        r, m = pareto_front(r, m)
    if len(r) < 2 or np.unique(m).size < 2:
        return None
    return r, m


def bd_rate(
    rate_a: Sequence[float],
    metric_a: Sequence[float],
    rate_b: Sequence[float],
    metric_b: Sequence[float],
    method: Method = "pchip",
) -> float | None:
    """Average % rate change of B vs reference A at equal metric (negative: B is cheaper)."""
    a, b = _prepare(rate_a, metric_a, method), _prepare(rate_b, metric_b, method)
    if a is None or b is None:
        return None
    lo = max(a[1].min(), b[1].min())
    hi = min(a[1].max(), b[1].max())
    if not hi > lo:
        return None
    ia = _integral(a[1], np.log(a[0]), lo, hi, method)
    ib = _integral(b[1], np.log(b[0]), lo, hi, method)
    return float((np.exp((ib - ia) / (hi - lo)) - 1.0) * 100.0)


def bd_metric(
    rate_a: Sequence[float],
    metric_a: Sequence[float],
    rate_b: Sequence[float],
    metric_b: Sequence[float],
    method: Method = "pchip",
) -> float | None:
    """Average metric gain of B over reference A at equal rate (e.g. accuracy points, dB)."""
    a, b = _prepare(rate_a, metric_a, method), _prepare(rate_b, metric_b, method)
    if a is None or b is None:
        return None
    la, lb = np.log(a[0]), np.log(b[0])
    lo, hi = max(la.min(), lb.min()), min(la.max(), lb.max())
    # Pareto fronts have strictly increasing rates; the cubic fit needs two distinct ones.
    if not hi > lo or np.unique(la).size < 2 or np.unique(lb).size < 2:
        return None
    ia = _integral(la, a[1], lo, hi, method)
    ib = _integral(lb, b[1], lo, hi, method)
    return float((ib - ia) / (hi - lo))
