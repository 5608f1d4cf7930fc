"""Served predictions at bf16 vs fp32: agreement, accuracy and the time of the two networks.

For each (codec, classifier) pair of the release set (``core.release.release_pairs``: the
default pair, then every released joint pair), the split's faces are encoded with the codec
(the client side, untimed) and entropy-decoded once (the float64 path that no precision
setting touches, untimed). Then the server's own functions (``service.model_api.synthesize`` and
``classify``, flip TTA as one forward of both views, as served) run once at fp32 with the
classifier as trained and once as served: bf16 (autocast + channels_last) with the classifier's
BatchNorms folded into its convolutions (``FERClassifier.folded``, as the server loads it),
``--batch`` faces per call (the server's default ``max_batch_size``), and the served
predictions (argmax of the TTA-averaged probabilities) are compared. ``ms/face`` is the wall
time of all calls of a stage divided by the faces, the fastest of ``--repeat`` passes (the two
precisions take turns batch by batch, so both see the same load), after one untimed warm-up
call each, at ``--threads`` torch threads (default 1).

    .venv/bin/python -m benchmarks.precision_agreement --data ../shared/data/fer2013.npz \
        --split PublicTest --json OUT.json

| column | meaning |
|---|---|
| `agree` | faces whose served expression is the same at bf16 and fp32, and their share |
| `acc fp32` / `acc bf16` | served accuracy (flip TTA) against the labels |
| `max dp` | largest absolute difference of one served probability, bf16 vs fp32 |
| `synth` / `clf ms/face` | g_s / classifier (both views) per face, fp32 -> bf16, speed-up |

bf16 on a CPU without bf16 units is emulated and slow: the script says whether this one has
them (``service.precision.native_bf16``); agreement holds either way, speed-ups do not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import benchmark_parser, finish
from core.artifacts import ModelRepository, bundled_models_dir, load_classifier, load_codec
from core.release import release_pairs
from service.model_api import classify, synthesize
from service.precision import Precision, native_bf16
from training.data import load_dataset
from training.eval import to_faces

COLUMNS = [
    ("codec", "codec"), ("classifier", "classifier"), ("faces", "faces"),
    ("agree", "agree"), ("acc_fp32", "acc fp32"), ("acc_bf16", "acc bf16"),
    ("max_dp", "max dp"), ("synth", "synth ms/face fp32 -> bf16"),
    ("clf", "clf ms/face fp32 -> bf16"),
]  # fmt: skip
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16")


def measure_pair(
    repo: ModelRepository,
    codec_ref: str,
    clf_ref: str,
    x: torch.Tensor,
    labels: np.ndarray[Any, np.dtype[np.int64]],
    batch: int,
    repeat: int,
) -> dict[str, Any]:
    # One copy of the models per precision: bf16 puts its models' weights in channels_last
    # (service.precision.prepare_model), which fp32 does not. fp32 is the classifier as
    # trained; bf16 the one the server runs, its BatchNorms folded (service.registry).
    models = {
        prec: (load_codec(repo.path(codec_ref))[0], load_classifier(repo.path(clf_ref))[0])
        for prec in PRECISIONS
    }
    models["bf16"] = (models["bf16"][0], models["bf16"][1].folded())
    codec = models["fp32"][0]
    payloads = [b for i in range(0, len(x), 256) for b in codec.encode(x[i : i + 256])]
    containers = [codec.parse(p) for p in payloads]
    h, w = containers[0].header.height, containers[0].header.width
    y_hat = torch.cat([
        codec.decode_latents(containers[i : i + 256]) for i in range(0, len(containers), 256)
    ])  # fmt: skip
    n = len(y_hat)
    stages = ("synthesis", "classifier")

    def run(prec: Precision, s: int) -> tuple[torch.Tensor, float, float]:
        codec, clf = models[prec]
        t0 = time.perf_counter()
        images = synthesize(codec, y_hat[s : s + batch], h, w, prec)
        t1 = time.perf_counter()
        p = classify(clf, images, prec, True)
        return p, t1 - t0, time.perf_counter() - t1

    for prec in PRECISIONS:
        run(prec, 0)  # warm-up
    # Both precisions take turns batch by batch (they see the same load); each stage's time
    # is its fastest pass of ``repeat``.
    best = {(prec, st): float("inf") for prec in PRECISIONS for st in stages}
    out: dict[str, list[torch.Tensor]] = {prec: [] for prec in PRECISIONS}
    for rep in range(repeat):
        total = dict.fromkeys(best, 0.0)
        for s in range(0, n, batch):
            for prec in PRECISIONS:
                p, syn_s, clf_s = run(prec, s)
                total[prec, stages[0]] += syn_s
                total[prec, stages[1]] += clf_s
                if rep == 0:
                    out[prec].append(p)
        best = {k: min(v, total[k]) for k, v in best.items()}
    probs = {prec: torch.cat(v) for prec, v in out.items()}
    ms = {prec: tuple(best[prec, st] * 1e3 / n for st in stages) for prec in PRECISIONS}
    pred = {k: v.argmax(1).numpy() for k, v in probs.items()}
    agree = int((pred["fp32"] == pred["bf16"]).sum())

    def change(i: int) -> str:
        a, b = ms["fp32"][i], ms["bf16"][i]
        return f"{a:.3f} -> {b:.3f} ({a / b:.2f}x)"

    return {
        "codec": codec_ref,
        "classifier": clf_ref,
        "faces": n,
        "agree": f"{agree}/{n} ({100 * agree / n:.2f} %)",
        "agreement": agree / n,
        "acc_fp32": float((pred["fp32"] == labels).mean()),
        "acc_bf16": float((pred["bf16"] == labels).mean()),
        "max_dp": float((probs["fp32"] - probs["bf16"]).abs().max()),
        "synth": change(0),
        "clf": change(1),
        "ms_per_face": {k: {"synthesis": v[0], "classifier": v[1]} for k, v in ms.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.precision_agreement", __doc__)
    p.add_argument("--data", type=Path, required=True, help="dataset (.npz, .csv or folder)")
    p.add_argument("--split", default="PublicTest")
    p.add_argument("--models", type=Path, default=None, help="model repository (default: bundled)")
    p.add_argument(
        "--pair", action="append", default=[], metavar="CODEC=CLASSIFIER",
        help="NAME/VERSION=NAME/VERSION; repeatable (default: every pair of the release set)",
    )  # fmt: skip
    p.add_argument("--faces", type=int, default=0, help="first N faces only (default: all)")
    p.add_argument("--batch", type=int, default=32, help="faces per call (default 32)")
    p.add_argument("--repeat", type=int, default=3, help="timed passes, fastest kept (3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    repo = ModelRepository(args.models or bundled_models_dir())
    pairs = [tuple(s.split("=", 1)) for s in args.pair] or release_pairs(repo)
    images, labels = load_dataset(args.data, args.split)
    faces, labels = to_faces(images), np.asarray(labels, dtype=np.int64)
    if args.faces > 0:
        faces, labels = faces[: args.faces], labels[: args.faces]
    x = torch.from_numpy(faces).float().div_(255.0).unsqueeze(1)
    rows = []
    for codec_ref, clf_ref in pairs:
        rows.append(measure_pair(repo, codec_ref, clf_ref, x, labels, args.batch, args.repeat))
        print(f"{codec_ref} + {clf_ref}: {rows[-1]['agree']}", flush=True)
    print(
        f"{args.data.name} {args.split}: {len(labels)} faces; flip TTA (one forward of both "
        f"views); batch {args.batch}; torch threads {torch.get_num_threads()}; CPU native bf16 "
        f"{native_bf16('cpu')}; min agreement {100 * min(r['agreement'] for r in rows):.2f} %"
    )
    return finish("precision_agreement", argv, COLUMNS, rows, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
