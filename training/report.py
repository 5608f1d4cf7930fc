"""Render eval JSON files (``training.eval``) as a Markdown results section and PNG plots.

Records of several eval runs on the same data (same dataset, split and face count) are merged,
so baselines and learned codecs may be evaluated separately. The curves compared are
*families*: each baseline format, and each learned family (``record["family"]``, overridable).
A learned codec's accuracy is taken with its paired classifier when the eval recorded one
(jointly trained codec + classifier), else with the primary classifier; baselines always use
the primary classifier. The plots are drawn with matplotlib's Agg canvas directly (no pyplot
state), so rendering works headless and inside servers/tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from training.bdrate import bd_metric, bd_rate
from training.report_tables import rate_lines, uncompressed_lines

BEGIN = "<!-- fercomp-report:begin -->"
END = "<!-- fercomp-report:end -->"
RESULTS = "RESULTS.md"
PER_CLASSIFIER = ("accuracy", "macro_f1", "accuracy_tta", "macro_f1_tta", "mirror_agreement")


def load_evals(paths: Iterable[Path]) -> list[dict[str, Any]]:
    docs = []
    for p in paths:
        doc = json.loads(Path(p).read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
            raise ValueError(f"{p} is not a fercomp eval JSON (no records)")
        docs.append(doc)
    if not docs:
        raise ValueError("no eval JSON given")
    return docs


def merge_evals(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One document per (dataset, split, n); later runs replace same-named operating points.

    The per-classifier scores of a replaced point are kept for classifiers the later run did
    not score, so an operating point measured in two runs (e.g. ``uncompressed``, which every
    eval records) keeps the accuracy of every classifier either run used.
    """
    groups: dict[tuple[str, str, int], dict[str, Any]] = {}
    for doc in docs:
        key = (str(doc.get("dataset")), str(doc.get("split")), int(doc.get("n", 0)))
        g = groups.setdefault(key, {**doc, "records": [], "classifiers": []})
        g["classifiers"] += [c for c in doc.get("classifiers", []) if c not in g["classifiers"]]
        by_name = {r["name"]: i for i, r in enumerate(g["records"])}
        for r in doc["records"]:
            if r["name"] in by_name:
                prev = g["records"][by_name[r["name"]]]
                per_clf = {k: {**prev.get(k, {}), **r.get(k, {})} for k in PER_CLASSIFIER}
                g["records"][by_name[r["name"]]] = {**r, **per_clf}
            else:
                by_name[r["name"]] = len(g["records"])
                g["records"].append(r)
    return list(groups.values())


def apply_families(records: list[dict[str, Any]], families: dict[str, list[str]]) -> None:
    """``{"joint": ["codec-a/1", "codec-b"]}``: set the family of learned records by ref or name."""
    for fam, refs in families.items():
        for r in records:
            art = r.get("artifact") or ""
            if r["name"] in refs or art in refs or art.split("/")[0] in refs:
                r["family"] = fam


def curve_accuracy(record: dict[str, Any], primary: str) -> float | None:
    acc = record.get("accuracy", {})
    ref = record.get("paired_classifier") or primary
    value = acc.get(ref, acc.get(primary))
    return None if value is None else float(value)


def family_curves(
    records: list[dict[str, Any]], primary: str, metric: str = "accuracy"
) -> dict[str, tuple[list[float], list[float]]]:
    """family -> (bytes per face, metric) over its operating points, sorted by rate."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if r["codec"] == "none":
            continue
        value = curve_accuracy(r, primary) if metric == "accuracy" else r.get(metric)
        if value is not None:
            curves.setdefault(r["family"], []).append((float(r["bytes_per_face"]), float(value)))
    return {f: ([p[0] for p in sorted(v)], [p[1] for p in sorted(v)]) for f, v in curves.items()}


def bd_tables(
    records: list[dict[str, Any]], primary: str, metric: str = "accuracy"
) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """learned family -> reference family -> (BD-rate %, BD-metric), for families with ≥2 points."""
    curves = {f: c for f, c in family_curves(records, primary, metric).items() if len(c[0]) >= 2}
    learned = sorted({r["family"] for r in records if r["codec"] == "learned"} & set(curves))
    out: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    for fam in learned:
        rb, mb = curves[fam]
        out[fam] = {}
        for ref in sorted(set(curves) - {fam}):
            ra, ma = curves[ref]
            out[fam][ref] = (bd_rate(ra, ma, rb, mb), bd_metric(ra, ma, rb, mb))
    return out


def _fmt(v: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if v is None else f"{v:{spec}}{suffix}"


def _results_table(doc: dict[str, Any], primary: str) -> list[str]:
    lines = [
        "| operating point | family | bytes/face | bpp | PSNR (dB) | MS-SSIM | accuracy "
        "| macro-F1 | classifier |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    order = {"none": 0, "learned": 2}
    recs = sorted(
        doc["records"],
        key=lambda r: (order.get(r["codec"], 1), r["family"], r["bytes_per_face"]),
    )
    for r in recs:
        clf = r.get("paired_classifier") or primary
        f1 = r.get("macro_f1", {}).get(clf, r.get("macro_f1", {}).get(primary))
        lines.append(
            f"| {r['name']} | {r['family']} | {r['bytes_per_face']:.1f} | {r['bpp']:.3f} "
            f"| {_fmt(r.get('psnr'), '.2f')} | {_fmt(r.get('ms_ssim'), '.4f')} "
            f"| {_fmt(curve_accuracy(r, primary), '.4f')} | {_fmt(f1, '.4f')} | {clf} |"
        )
    return lines


def _bd_cell(cell: tuple[float | None, float | None] | None, unit: str) -> str:
    if cell is None or cell == (None, None):
        return "n/a"
    return f"{_fmt(cell[0], '+.1f', ' %')} ({_fmt(cell[1], '+.3g', unit)})"


def _bd_lines(records: list[dict[str, Any]], primary: str, metric: str, unit: str) -> list[str]:
    table = bd_tables(records, primary, metric)
    if not table:
        return [
            f"_No BD-rate on {metric}: needs a learned family and another family with at "
            "least two operating points each._"
        ]
    refs = sorted({ref for row in table.values() for ref in row})
    lines = [
        "| learned family | " + " | ".join(f"vs {r}" for r in refs) + " |",
        "|---|" + "---:|" * len(refs),
    ]
    for fam, row in table.items():
        cells = [_bd_cell(row.get(ref), unit) for ref in refs]
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(doc: dict[str, Any], primary: str, figures: dict[str, str]) -> str:
    n, title = doc.get("n"), f"{doc.get('dataset')} — split {doc.get('split')}"
    out = [f"### {title} ({n} faces)", ""]
    out += [
        f"Primary classifier: `{primary}`; device `{doc.get('device')}`; "
        f"created {doc.get('created')}.",
        "",
    ]
    out += [*_results_table(doc, primary), ""]
    for label, rel in figures.items():
        out += [f"![{label}]({rel})", ""]
    raw = next((r for r in doc["records"] if r["codec"] == "none"), None)
    reference = None if raw is None else curve_accuracy(raw, primary)
    if reference is not None:
        out += [
            "Bytes per face each family needs to reach an accuracy (targets below the primary "
            f"classifier's {reference:.1%} on uncompressed faces; linear interpolation in "
            "log-bytes between measured points):",
            "",
            *rate_lines(family_curves(doc["records"], primary), reference),
            "",
        ]
    out += ["Classifiers on uncompressed faces:", "", *uncompressed_lines(doc["records"], primary)]
    out += [""]
    out += [
        "BD-rate on the accuracy-rate curve (negative = fewer bytes for the same accuracy; "
        "in brackets the mean accuracy gain at equal rate):",
        "",
    ]
    out += [*_bd_lines(doc["records"], primary, "accuracy", ""), ""]
    out += ["BD-rate on the PSNR-rate curve (in brackets: BD-PSNR):", ""]
    out += [*_bd_lines(doc["records"], primary, "psnr", " dB"), ""]
    return "\n".join(out)


NOTES = """Notes on the metrics (also stored in each eval JSON under `metrics`):
- **bytes/face** is the whole payload: a learned codec's complete v1 container including its
  16-byte header; for JPEG/WebP/AVIF the complete file as Pillow writes it, including the
  format's own headers (significant at 48x48). bpp = 8 · bytes / (48 · 48).
- **PSNR** is the mean per-face PSNR on uint8 images (each face capped at 100 dB).
- **MS-SSIM** is computed at the native 48x48 resolution with the standard 5 scales and weights
  but a 3x3 Gaussian window (the default 11-tap window needs images > 160 px); comparable within
  this report, not with MS-SSIM figures for large images (see `training/eval_metrics.py`).
- **BD-rate** (Bjøntegaard) uses a PCHIP fit of log(bytes) over each curve's Pareto front,
  integrated over the shared metric range (see `training/bdrate.py`).
"""


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


def _splice(existing: str, section: str) -> str:
    """Replace the generated section between the markers, keeping hand-written text around it."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    if BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return existing.rstrip() + "\n\n" + block + "\n"


def write_report(
    eval_paths: list[Path],
    out_dir: Path,
    families: dict[str, list[str]] | None = None,
    classifier: str | None = None,
) -> list[Path]:
    """Write ``out_dir/RESULTS.md`` (generated section) and ``out_dir/figures/*.png``."""
    groups = merge_evals(load_evals(eval_paths))
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections = [
        "## Rate-accuracy results",
        "",
        "_Generated by `fercomp report`; edits inside this section are overwritten._",
        "",
    ]
    for i, doc in enumerate(groups):
        apply_families(doc["records"], families or {})
        primary = classifier or doc.get("primary_classifier") or (doc.get("classifiers") or [""])[0]
        if classifier and not any(classifier in r.get("accuracy", {}) for r in doc["records"]):
            raise ValueError(f"classifier {classifier!r} is not in the eval results")
        suffix = "" if len(groups) == 1 else f"_{i + 1}"
        figs = {
            "accuracy vs bytes per face": fig_dir / f"accuracy_vs_rate{suffix}.png",
            "PSNR and MS-SSIM vs bytes per face": fig_dir / f"distortion_vs_rate{suffix}.png",
        }
        plot_accuracy(doc, primary, figs["accuracy vs bytes per face"])
        plot_distortion(doc, primary, figs["PSNR and MS-SSIM vs bytes per face"])
        written += list(figs.values())
        rel = {k: v.relative_to(out_dir).as_posix() for k, v in figs.items()}
        sections += [render_markdown(doc, primary, rel), ""]
    sections.append(NOTES)
    md = out_dir / RESULTS
    existing = md.read_text() if md.is_file() else "# Results\n"
    md.write_text(_splice(existing, "\n".join(sections)))
    return [md, *written]
