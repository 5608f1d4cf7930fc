"""The Markdown of a results section: tables of records, BD-rates and notes."""

from __future__ import annotations

from typing import Any

from training.report_curves import bd_tables, curve_accuracy, family_curves
from training.report_tables import (
    budget_lines,
    equal_bytes_lines,
    rate_lines,
    uncompressed_lines,
)

BEGIN = "<!-- fercomp-report:begin -->"
END = "<!-- fercomp-report:end -->"


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


def _at_rate_lines(
    records: list[dict[str, Any]],
    primary: str,
    metric: str,
    curves: dict[str, tuple[list[float], list[float]]],
) -> list[str]:
    """Each family's accuracy at fixed byte budgets, and each learned point against the
    non-learned families (WebP, JPEG, ... each with its classifier) at the point's own bytes:
    the figures "at equal bytes" in the docs, read off measured points, never extrapolated.
    ``metric`` is "accuracy_tta" (as served) or "accuracy" (raw); ``curves`` its family curves."""
    how = "as served, flip TTA" if metric == "accuracy_tta" else "raw"
    baselines = {r["family"] for r in records if r["codec"] not in ("none", "learned")}
    learned: dict[str, dict[str, Any]] = {}
    for r in records:  # a codec on two families' curves is one point here
        if r["codec"] == "learned":
            learned.setdefault(r["name"], r)
    out = [
        f"Accuracy ({how}) each family has at a byte budget (linear interpolation in log-bytes "
        "between its measured Pareto points; — outside its measured range):",
        "",
        *budget_lines(curves, 100.0, " %"),
        "",
    ]
    refs = {f: c for f, c in curves.items() if f in baselines}
    points = [
        (name, float(r["bytes_per_face"]), acc)
        for name, r in learned.items()
        if (acc := curve_accuracy(r, primary, metric)) is not None
    ]
    if refs and points:
        out += [
            f"Each learned point against the other codecs at its own bytes (accuracy {how}; "
            "in brackets the point's lead; — where the codec has no file that size):",
            "",
            *equal_bytes_lines(points, refs, 100.0, " %", " pt"),
            "",
        ]
    psnr_refs: dict[str, tuple[list[float], list[float]]] = {}
    for f, c in sorted(family_curves(records, primary, "psnr").items()):
        # WebP read by two classifiers is one set of files: one PSNR column, the first name
        if f in baselines and c not in psnr_refs.values():
            psnr_refs[f] = c
    psnr_points = [
        (name, float(r["bytes_per_face"]), float(r["psnr"]))
        for name, r in learned.items()
        if r.get("psnr") is not None
    ]
    if psnr_refs and psnr_points:
        out += [
            "The same for PSNR (dB; in brackets the point's lead):",
            "",
            *equal_bytes_lines(psnr_points, psnr_refs, 1.0, "", " dB"),
            "",
        ]
    return out


def render_markdown(doc: dict[str, Any], primary: str, figures: dict[str, str]) -> str:
    n, title = doc.get("n"), f"{doc.get('dataset')} — split {doc.get('split')}"
    if doc.get("perturb"):
        p = doc["perturb"]
        title += f", perturbed ({p.get('kind')}, seed {p.get('seed')})"
    out = [f"### {title} ({n} faces)", ""]
    out += [
        f"Primary classifier: `{primary}`; device `{doc.get('device')}`; "
        f"created {doc.get('created')}.",
        "",
    ]
    out += [*_results_table(doc, primary), ""]
    for label, rel in figures.items():
        out += [f"![{label}]({rel})", ""]
    # The targets and the server use flip TTA; raw tables stay for reports from older evals.
    served = any(r.get("accuracy_tta") for r in doc["records"] if r["codec"] == "learned")
    raw_curves = family_curves(doc["records"], primary)
    served_curves = family_curves(doc["records"], primary, "accuracy_tta") if served else {}
    raw = next((r for r in doc["records"] if r["codec"] == "none"), None)
    reference = None if raw is None else curve_accuracy(raw, primary)
    if reference is not None:
        out += [
            "Bytes per face each family needs to reach an accuracy (targets below the primary "
            f"classifier's {reference:.1%} on uncompressed faces; linear interpolation in "
            "log-bytes between measured points):",
            "",
            *rate_lines(raw_curves, reference),
            "",
        ]
        reference_tta = curve_accuracy(raw, primary, "accuracy_tta")
        if reference_tta is not None and served:
            out += [
                "The same as served (flip TTA; targets below the primary classifier's "
                f"{reference_tta:.1%} with flip TTA on uncompressed faces; points without "
                "flip-TTA accuracy left out):",
                "",
                *rate_lines(served_curves, reference_tta),
                "",
            ]
    if served:
        out += _at_rate_lines(doc["records"], primary, "accuracy_tta", served_curves)
    else:
        out += _at_rate_lines(doc["records"], primary, "accuracy", raw_curves)
    out += ["Classifiers on uncompressed faces:", "", *uncompressed_lines(doc["records"], primary)]
    out += [""]
    out += [
        "BD-rate on the accuracy-rate curve (negative = fewer bytes for the same accuracy; "
        "in brackets the mean accuracy gain at equal rate):",
        "",
    ]
    out += [*_bd_lines(doc["records"], primary, "accuracy", ""), ""]
    if served:
        out += [
            "BD-rate on the accuracy-rate curve as served (flip TTA; points whose eval files "
            "have no flip-TTA accuracy are left out, and families left with fewer than two):",
            "",
            *_bd_lines(doc["records"], primary, "accuracy_tta", ""),
            "",
        ]
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


def splice(existing: str, section: str) -> str:
    """Replace the generated section between the markers, keeping hand-written text around it."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    if BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return existing.rstrip() + "\n\n" + block + "\n"
