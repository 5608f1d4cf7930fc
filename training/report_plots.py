"""PNG plots of a results section, drawn with matplotlib's Agg canvas directly (no pyplot
state), so rendering works headless and inside servers/tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.report_curves import curve_accuracy, family_curves


def _axes_style(ax: Any, xlabel: str, ylabel: str) -> None:
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def plot_accuracy(doc: dict[str, Any], primary: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    paired = {r["family"] for r in doc["records"] if r.get("paired_classifier")}
    for fam, (rates, accs) in sorted(family_curves(doc["records"], primary).items()):
        ax.plot(rates, accs, marker="o", ms=4, label=fam + (" (paired clf)" * (fam in paired)))
    for r in doc["records"]:
        acc = curve_accuracy(r, primary)
        if r["codec"] == "none" and acc is not None:
            ax.axhline(acc, color="gray", ls="--", lw=1, label=f"uncompressed ({acc:.3f})")
    _axes_style(ax, "bytes per face (log scale)", f"accuracy ({primary})")
    ax.set_title(f"FER accuracy vs rate — {doc.get('split')} ({doc.get('n')} faces)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def plot_distortion(doc: dict[str, Any], primary: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), dpi=120)
    FigureCanvasAgg(fig)
    for i, (metric, label) in enumerate((("psnr", "PSNR (dB)"), ("ms_ssim", "MS-SSIM"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for fam, (rates, vals) in sorted(family_curves(doc["records"], primary, metric).items()):
            ax.plot(rates, vals, marker="o", ms=4, label=fam)
        _axes_style(ax, "bytes per face (log scale)", label)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def sample_rows(doc: dict[str, Any], decoded: list[np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """The lowest-rate operating point of each family, cheapest first, labelled with its size."""
    best: dict[str, int] = {}
    for i, r in enumerate(doc["records"]):
        if r["codec"] != "none" and (
            r["family"] not in best
            or r["bytes_per_face"] < doc["records"][best[r["family"]]]["bytes_per_face"]
        ):
            best[r["family"]] = i
    rows = sorted(best.values(), key=lambda i: doc["records"][i]["bytes_per_face"])
    return [
        (f"{doc['records'][i]['name']}\n{doc['records'][i]['bytes_per_face']:.0f} B", decoded[i])
        for i in rows
    ]


def render_samples(originals: np.ndarray, rows: list[tuple[str, np.ndarray]], path: Path) -> None:
    """Grid: first row the original faces, then one row of decoded faces per operating point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    all_rows = [("original", originals), *rows]
    k = len(originals)
    fig = Figure(figsize=(1.2 * k + 1.6, 1.25 * len(all_rows)), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(all_rows), k, squeeze=False)
    for i, (label, faces) in enumerate(all_rows):
        for j in range(k):
            ax = axes[i][j]
            if j < len(faces):
                ax.imshow(faces[j], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(left=0.16, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.08)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
