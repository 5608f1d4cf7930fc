"""Summary tables of the results report: the rate each codec family needs to reach a given
accuracy, the accuracy (or PSNR) each family has at a given rate, and every classifier's
accuracy on uncompressed faces.

"Bytes to reach an accuracy" answers the deployment question directly (how much must a client
send per face for the server to be right this often?), and the ratios between families are the
headline figures (e.g. joint vs WebP). "At equal bytes" answers the other way round (what does
WebP give at the bytes a learned point spends?). Neither fits a curve beyond linear
interpolation in log-bytes between measured points, and neither extrapolates.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

#: accuracy targets, in points below the primary classifier's accuracy on uncompressed faces
DROPS = (1.0, 3.0, 5.0, 10.0, 15.0)
#: byte budgets per face of the "at a given rate" table
BUDGETS = (80.0, 100.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0)


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(bytes, accuracy) points no other point beats with fewer bytes, by increasing bytes."""
    front: list[tuple[float, float]] = []
    for b, a in sorted(points):
        if not front or a > front[-1][1]:
            front.append((b, a))
    return front


def bytes_for_accuracy(points: list[tuple[float, float]], target: float) -> float | None:
    """Fewest bytes/face at which the family reaches ``target`` accuracy: linear interpolation
    in log(bytes) between neighbouring Pareto points; None when no point reaches it."""
    front = pareto(points)
    for i, (b, a) in enumerate(front):
        if a >= target:
            if i == 0:
                return b
            (b0, a0) = front[i - 1]
            t = (target - a0) / (a - a0)
            return math.exp(math.log(b0) + t * (math.log(b) - math.log(b0)))
    return None


def value_at_bytes(points: list[tuple[float, float]], rate: float) -> float | None:
    """The best value the family has at ``rate`` bytes/face: linear interpolation in log(bytes)
    between neighbouring Pareto points, the last Pareto value between that point and the
    family's largest measured rate (a dominated point costs more for less); None outside the
    measured range (no extrapolation)."""
    if not points or not min(b for b, _ in points) <= rate <= max(b for b, _ in points):
        return None
    front = pareto(points)
    for (b0, a0), (b1, a1) in itertools.pairwise(front):
        if b0 <= rate <= b1 and b0 < b1:
            t = (math.log(rate) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return a0 + t * (a1 - a0)
    return front[-1][1]  # rate at or beyond the last Pareto point (or equal to its only point)


def budget_lines(
    curves: dict[str, tuple[list[float], list[float]]], scale: float, unit: str
) -> list[str]:
    """Markdown table: family -> its value at each byte budget in BUDGETS (— outside its range)."""
    lines = ["| family | " + " | ".join(f"{b:g} B" for b in BUDGETS) + " |"]
    lines.append("|---|" + "---:|" * len(BUDGETS))
    for fam in sorted(curves):
        points = list(zip(*curves[fam], strict=True))
        cells = [value_at_bytes(points, b) for b in BUDGETS]
        lines.append(
            f"| {fam} | "
            + " | ".join("—" if v is None else f"{scale * v:.2f}{unit}" for v in cells)
            + " |"
        )
    return lines


def equal_bytes_lines(
    points: list[tuple[str, float, float]],
    curves: dict[str, tuple[list[float], list[float]]],
    scale: float,
    unit: str,
    delta_unit: str,
) -> list[str]:
    """Markdown table: each (name, bytes, value) point against every family in ``curves`` at the
    point's own bytes: that family's value there (interpolated) and the point's lead over it."""
    refs = sorted(curves)
    lines = ["| operating point | bytes/face | value | " + " | ".join(refs) + " |"]
    lines.append("|---|---:|---:|" + "---:|" * len(refs))
    for name, rate, value in sorted(points, key=lambda p: (p[1], p[0])):
        cells = []
        for ref in refs:
            there = value_at_bytes(list(zip(*curves[ref], strict=True)), rate)
            cells.append(
                "—"
                if there is None
                else f"{scale * there:.2f}{unit} ({scale * (value - there):+.2f}{delta_unit})"
            )
        lines.append(
            f"| {name} | {rate:.1f} | {scale * value:.2f}{unit} | " + " | ".join(cells) + " |"
        )
    return lines


def rate_lines(curves: dict[str, tuple[list[float], list[float]]], reference: float) -> list[str]:
    """Markdown table: family -> bytes/face to reach (reference - drop) for each drop in DROPS."""
    targets = [reference - d / 100 for d in DROPS]
    head = " | ".join(f"≥ {t:.1%} (-{d:g} pt)" for t, d in zip(targets, DROPS, strict=True))
    lines = [f"| family | {head} |", "|---|" + "---:|" * len(targets)]
    for fam in sorted(curves):
        points = list(zip(*curves[fam], strict=True))
        lowest = pareto(points)[0] if points else None
        cells = []
        for t in targets:
            b = bytes_for_accuracy(points, t)
            if b is None:
                cells.append("not reached")
            elif lowest is not None and lowest[1] > t:
                # already above the target at the lowest rate measured: an upper bound only
                cells.append(f"≤ {b:.0f} B")
            else:
                cells.append(f"{b:.0f} B")
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return lines


def uncompressed_lines(records: list[dict[str, Any]], primary: str) -> list[str]:
    """Markdown table: accuracy, macro-F1, flip-TTA accuracy and mirror agreement of every
    classifier on uncompressed faces (n/a for eval files written before those fields; the two
    columns are left out when no file has them, so older reports regenerate unchanged)."""
    raw = next((r for r in records if r["codec"] == "none"), None)
    if raw is None:
        return ["_No uncompressed record in the eval results._"]
    acc, f1 = raw.get("accuracy", {}), raw.get("macro_f1", {})
    tta, mirror = raw.get("accuracy_tta", {}), raw.get("mirror_agreement", {})
    base = acc.get(primary)

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    served = bool(tta or mirror)
    head = "| classifier | accuracy | vs primary | macro-F1 |"
    rule = "|---|---:|---:|---:|"
    if served:
        head, rule = head + " accuracy, flip TTA | mirror agreement |", rule + "---:|---:|"
    lines = [head, rule]
    for clf in sorted(acc, key=lambda c: (c != primary, c)):
        delta = "—" if clf == primary or base is None else f"{100 * (acc[clf] - base):+.1f} pt"
        row = f"| {clf} | {acc[clf]:.4f} | {delta} | {num(f1.get(clf))} |"
        if served:
            row += f" {num(tta.get(clf))} | {num(mirror.get(clf))} |"
        lines.append(row)
    return lines
