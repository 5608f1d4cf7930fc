"""The served operating points: the table of README.md and docs/RESULTS.md, and its plot.

    .venv/bin/python scripts/operating_points.py     # ~5 s: reads JSONs, writes two files

Reads measured results only, nothing is re-measured:

* ``docs/results/served-accuracy-release.json`` (``benchmarks.served_accuracy``): each release
  pair's PublicTest faces encoded by the client and classified by a real server with its
  default settings (flip TTA, the classifier the server picks): bytes/face and accuracy as served;
* ``fercomp eval`` JSONs with WebP read by the baseline and by the WebP-adapted classifier, with
  flip TTA (``publictest-align4-rd2.json``: q5-q50 and q70; ``publictest-webp-high.json``: q60,
  q75-q90), and the baseline on uncompressed faces.

WebP's accuracy at a pair's bytes is the report's interpolation
(``training.report_tables.value_at_bytes``: linear in log-bytes between WebP's Pareto points,
never extrapolated), so the figures equal the "at its own bytes" table of
``docs/frontier-30/RESULTS.md``. WebP has no file below 201.7 B per face (q5), so pairs below
that are set against q5.

Writes ``docs/results/operating-points.json`` (the rows, the WebP points, the sources) and
``docs/figures/operating_points.png``, and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the repository's packages

from training.report_curves import load_evals, merge_evals  # noqa: E402
from training.report_tables import pareto, value_at_bytes  # noqa: E402

RESULTS = Path("docs/results")
SERVED = RESULTS / "served-accuracy-release.json"
EVALS = (RESULTS / "publictest-align4-rd2.json", RESULTS / "publictest-webp-high.json")
BASELINE = "fer-resnet18/13"
ADAPTED = "fer-resnet18-webp/2"
UNCOMPRESSED_BYTES = 48 * 48


def _pair_label(codec: str, classifier: str, default_codec: str | None) -> str:
    own = codec.replace("face-hyperprior-", "fer-resnet18-")
    reader = "its joint classifier" if classifier == own else f"`{classifier}`"
    label = f"`{codec}` + {reader}"
    return f"**{label} (default)**" if codec == default_codec else label


def _webp_points(doc: dict[str, Any], classifier: str) -> list[tuple[float, float]]:
    """(bytes/face, accuracy as served) of each WebP quality read by ``classifier``."""
    seen: dict[float, tuple[float, float]] = {}
    for r in doc["records"]:
        acc = r.get("accuracy_tta", {}).get(classifier)
        if r["codec"] == "webp" and acc is not None:
            seen[float(r["quality"])] = (float(r["bytes_per_face"]), float(acc))
    if len(seen) < 2:
        raise ValueError(f"the eval JSONs have fewer than two WebP points read by {classifier}")
    return sorted(seen.values())


def build(
    served_path: Path,
    eval_paths: Sequence[Path],
    baseline: str = BASELINE,
    adapted: str = ADAPTED,
    default_codec: str | None = None,
) -> dict[str, Any]:
    served = json.loads(served_path.read_text())
    if served.get("benchmark") != "served_accuracy":
        raise ValueError(f"{served_path} is not a benchmarks.served_accuracy JSON")
    groups = merge_evals(load_evals(eval_paths))
    faces = {int(r["faces"]) for r in served["rows"]}
    docs = [g for g in groups if not g.get("perturb") and int(g.get("n", 0)) in faces]
    if len(docs) != 1 or len(faces) != 1:
        raise ValueError("the eval JSONs and the served run must score the same faces, once")
    doc = docs[0]
    webp = {"baseline": _webp_points(doc, baseline), "adapted": _webp_points(doc, adapted)}
    smallest = {k: min(v) for k, v in webp.items()}
    clean = next(r for r in doc["records"] if r["codec"] == "none")["accuracy_tta"][baseline]

    rows: list[dict[str, Any]] = [
        {
            "label": f"uncompressed faces + the baseline classifier `{baseline}`",
            "codec": None,
            "classifier": baseline,
            "bytes_per_face": float(UNCOMPRESSED_BYTES),
            "served": float(clean),
            "webp_baseline": None,
            "webp_adapted": None,
        }
    ]
    for r in sorted(served["rows"], key=lambda r: r["bytes_per_face"]):
        rate = float(r["bytes_per_face"])
        rows.append(
            {
                "label": _pair_label(r["codec"], r["classifier"], default_codec),
                "codec": r["codec"],
                "classifier": r["classifier"],
                "bytes_per_face": rate,
                "served": float(r["served"]),
                "webp_baseline": value_at_bytes(webp["baseline"], rate),
                "webp_adapted": value_at_bytes(webp["adapted"], rate),
            }
        )
    return {
        "split": f"{doc.get('split')} ({next(iter(faces))} faces)",
        "served_json": served_path.as_posix(),
        "served_argv": served.get("argv"),
        "eval_jsons": [Path(p).as_posix() for p in eval_paths],
        "eval_commands": [json.loads(Path(p).read_text()).get("command") for p in eval_paths],
        "baseline": baseline,
        "adapted": adapted,
        "webp": webp,
        "webp_smallest": smallest,
        "rows": rows,
    }


def _pct(v: float) -> str:
    return f"{100 * v:.2f} %"


def _webp_cell(there: float | None, served: float, smallest: Sequence[float]) -> str:
    if there is None:
        return f"no file this small (q5: {_pct(smallest[1])} at {smallest[0]:.1f} B)"
    return f"{_pct(there)} ({100 * (served - there):+.2f} pt)"


def markdown(table: dict[str, Any]) -> str:
    base, adapted = table["baseline"], table["adapted"]
    lines = [
        "| operating point (codec + the classifier the server reads it with) | bytes/face "
        f"| accuracy as served | WebP + baseline `{base}` at these bytes (pair's lead) "
        f"| WebP + WebP-adapted `{adapted}` at these bytes (pair's lead) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in table["rows"]:
        if r["codec"] is None:
            cells = ["—", "—"]
        else:
            cells = [
                _webp_cell(r["webp_baseline"], r["served"], table["webp_smallest"]["baseline"]),
                _webp_cell(r["webp_adapted"], r["served"], table["webp_smallest"]["adapted"]),
            ]
        lines.append(
            f"| {r['label']} | {r['bytes_per_face']:,.1f} | {_pct(r['served'])} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def plot(table: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.3), dpi=100)
    styles = {
        "baseline": ("WebP + baseline `{}`", "tab:gray", "s"),
        "adapted": ("WebP + WebP-adapted `{}`", "tab:blue", "^"),
    }
    for key, (label, color, marker) in styles.items():
        points = [(b, 100 * a) for b, a in table["webp"][key]]
        front = pareto(points)
        ax.plot(*zip(*front, strict=True), color=color, lw=1.2)
        ax.plot(
            *zip(*points, strict=True),
            ls="none",
            marker=marker,
            ms=4,
            color=color,
            label=label.format(table[key]).replace("`", ""),
        )
    pairs = [r for r in table["rows"] if r["codec"] is not None]
    xs = [r["bytes_per_face"] for r in pairs]
    ys = [100 * r["served"] for r in pairs]
    ax.plot(xs, ys, color="tab:red", lw=1.2, ls="--")
    ax.plot(xs, ys, ls="none", marker="o", ms=6, color="tab:red", label="release pairs, served")
    for i, (r, x, y) in enumerate(zip(pairs, xs, ys, strict=True)):
        name = r["codec"].removeprefix("face-hyperprior-")
        if r["label"].startswith("**"):
            name += " (default)"
            ax.plot([x], [y], marker="*", ms=13, color="tab:red", ls="none")
        crowded = i + 1 < len(xs) and xs[i + 1] < 1.15 * x  # the next label would overlap
        ax.annotate(
            name,
            (x, y),
            textcoords="offset points",
            xytext=(-7, -3) if crowded else (6, -10),
            ha="right" if crowded else "left",
            fontsize=7,
        )
    clean = 100 * table["rows"][0]["served"]
    ax.axhline(clean, color="black", lw=0.8)
    ax.axhline(clean - 1, color="black", lw=0.8, ls=":")
    ax.text(62, clean + 0.25, f"uncompressed + baseline ({clean:.2f} %, 2,304 B)", fontsize=7)
    ax.text(62, clean - 1 + 0.25, "baseline - 1 pt", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(60, 1000)
    ax.set_ylim(55, clean + 1.5)
    ticks = [80, 100, 150, 200, 300, 400, 600, 1000]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("bytes per face (whole payload)")
    ax.set_ylabel("accuracy as served (%)")
    ax.set_title(f"FER2013 {table['split']}: served operating points vs WebP", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})  # no matplotlib version: same bytes each run
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--served", type=Path, default=SERVED, help="benchmarks.served_accuracy JSON")
    p.add_argument(
        "--eval", type=Path, action="append", help="fercomp eval JSONs with the WebP points"
    )
    p.add_argument("--baseline", default=BASELINE)
    p.add_argument("--adapted", default=ADAPTED)
    p.add_argument("--json", type=Path, default=RESULTS / "operating-points.json")
    p.add_argument("--png", type=Path, default=Path("docs/figures/operating_points.png"))
    p.add_argument("--models", type=Path, default=Path("models"), help="for the default pair")
    args = p.parse_args(argv)
    defaults = args.models / "defaults.json"
    default_codec = json.loads(defaults.read_text())["codec"] if defaults.is_file() else None
    table = build(args.served, args.eval or list(EVALS), args.baseline, args.adapted, default_codec)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(table, indent=2) + "\n")
    plot(table, args.png)
    print(markdown(table))
    print(f"\nwrote {args.json} and {args.png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
