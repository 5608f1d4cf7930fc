"""Measure the bundled codecs' container sizes on real faces and score the size buckets.

service/metrics.py's bytes/bpp/ratio buckets must resolve the sizes the codecs really
produce, or histogram_quantile() reads a wide bucket instead of the traffic (issue 14: p95
read 369 B for a true 289 B). Re-run when a codec moves the range:

    PYTHONPATH=$PWD python scripts/fit_size_buckets.py --data ../shared/data/fer2013.npz

It encodes the split with every codec artifact in models/ (about a minute per codec on two
busy CPU cores; ``--cache sizes.npz`` keeps the sizes for later runs), then prints each
codec's size range and the error of Prometheus's p50/p95 estimate against the exact quantile:
on all faces, and the worst and mean over random draws of ``--sample`` faces (a window's worth
of traffic; small draws add the sampling noise of a sparse tail, whatever the buckets). Try
another layout with ``--range LO HI --steps N`` and copy it into service/metrics.py
(FINE_BYTES_RANGE, FINE_STEPS_PER_OCTAVE) if it is better; docs/METRICS.md records the fit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from core.artifacts import ModelRepository, bundled_models_dir, load_codec
from service.metrics import FINE_BYTES_RANGE, FINE_STEPS_PER_OCTAVE, size_buckets
from training.data import load_npz

QUANTILES = (0.5, 0.95)


def histogram_quantile(q: float, bounds: tuple[int, ...], values: np.ndarray) -> float:
    """Prometheus's estimate (promql/quantile.go): linear inside the bucket holding rank q*n
    (the first bucket starting at 0); values beyond the last bound give that bound."""
    counts = [int((values <= b).sum()) for b in bounds]
    rank = q * len(values)
    i = next((k for k, c in enumerate(counts) if c >= rank), None)
    if i is None:
        return float(bounds[-1])
    lo, below = (0.0, 0) if i == 0 else (float(bounds[i - 1]), counts[i - 1])
    return lo + (bounds[i] - lo) * (rank - below) / (counts[i] - below)


def rel_errors(bounds: tuple[int, ...], values: np.ndarray) -> list[float]:
    """Per quantile: estimate / exact (numpy's linear interpolation) - 1."""
    return [histogram_quantile(q, bounds, values) / np.quantile(values, q) - 1 for q in QUANTILES]


def measure(data: str, split: str, models: str, limit: int) -> dict[str, np.ndarray]:
    images, _ = load_npz(data, split)
    x = torch.from_numpy(images[: limit or None]).float().div(255).unsqueeze(1)
    repo = ModelRepository(models)
    out = {}
    for m in repo.list("codec"):
        codec, _ = load_codec(repo.path(m.ref))
        out[m.ref] = np.array([len(p) for i in range(0, len(x), 256)
                               for p in codec.encode(x[i : i + 256])])  # fmt: skip
        print(f"measured {m.ref}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--data", default="../shared/data/fer2013.npz")
    ap.add_argument("--split", default="PublicTest")
    ap.add_argument("--models", default=str(bundled_models_dir()))
    ap.add_argument("--limit", type=int, default=0, help="faces per codec (0: all)")
    ap.add_argument("--cache", type=Path, help=".npz of sizes: read if present, else written")
    ap.add_argument("--range", type=int, nargs=2, default=FINE_BYTES_RANGE)
    ap.add_argument("--steps", type=int, default=FINE_STEPS_PER_OCTAVE, help="per octave")
    ap.add_argument("--sample", type=int, default=90, help="faces per random draw")
    ap.add_argument("--draws", type=int, default=200, help="random draws per codec")
    args = ap.parse_args()

    if args.cache and args.cache.is_file():
        with np.load(args.cache) as f:
            sizes = {k: f[k] for k in f.files}
    else:
        sizes = measure(args.data, args.split, args.models, args.limit)
        if args.cache:
            np.savez(args.cache, **sizes)
    bounds = size_buckets(args.range[0], args.range[1], args.steps)
    rng = np.random.default_rng(0)
    print(f"{len(bounds)} bounds: {bounds}")
    print(f"{'codec':34} {'min':>4} {'p5':>4} {'p50':>4} {'p95':>4} {'max':>4}"
          "   all faces p50/p95   draws worst p50/p95   draws mean p50/p95")  # fmt: skip
    table = []
    for ref, v in sizes.items():
        v = v.astype(float)
        full = rel_errors(bounds, v)
        draws = np.abs([rel_errors(bounds, rng.choice(v, args.sample, replace=False))
                        for _ in range(args.draws)])  # fmt: skip
        table.append([np.abs(full), draws.max(0), draws.mean(0)])
        p = np.percentile(v, [0, 5, 50, 95, 100])
        print(f"{ref:34} " + " ".join(f"{x:4.0f}" for x in p)
              + f"   {full[0]:+6.2%} {full[1]:+6.2%}"
              + f"     {draws.max(0)[0]:6.2%} {draws.max(0)[1]:6.2%}"
              + f"     {draws.mean(0)[0]:6.2%} {draws.mean(0)[1]:6.2%}")  # fmt: skip
    worst = np.max(table, axis=0)
    allv = np.concatenate(list(sizes.values()))
    print(f"all codecs: {allv.min()}..{allv.max()} B; worst |error| all faces "
          f"{worst[0][0]:.2%}/{worst[0][1]:.2%}, draws {worst[1][0]:.2%}/{worst[1][1]:.2%}, "
          f"mean over draws {worst[2][0]:.2%}/{worst[2][1]:.2%} (p50/p95)")  # fmt: skip


if __name__ == "__main__":
    main()
