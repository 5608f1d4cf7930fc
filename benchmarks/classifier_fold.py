"""The served classifier with its BatchNorms as trained and folded into its convolutions
(``FERClassifier.folded``, what the server loads): time per face and agreement, side by side.

One process, the default classifier (or ``--classifier``), flip TTA as one forward of both
views at the server's precision (``service.model_api.classify``). For each ``--batch`` size
the two forms take turns call by call on the same faces (both see the same load); a row gives
each form's ms/face (fastest of ``--repeat`` passes over ``--faces`` faces), the speed-up, and
on how many faces the served expression (argmax) is the same.

    .venv/bin/python -m benchmarks.classifier_fold --data ../shared/data/fer2013.npz

Agreement with fp32 as trained, the figure the precision target is about, is measured on every
release pair by benchmarks/precision_agreement.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import torch

from benchmarks.common import add_common_args, benchmark_parser, finish, load_faces
from core.artifacts import ModelRepository, bundled_models_dir, load_classifier
from service.model_api import classify
from service.precision import resolve_precision

COLUMNS = [("batch", "faces per call"), ("trained_ms", "as trained ms/face"),
           ("folded_ms", "folded ms/face"), ("x", "speed-up"),
           ("agree", "same expression")]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.classifier_fold", __doc__)
    add_common_args(p, faces=512, quality=False)
    p.add_argument("--classifier", default=None, help="NAME/VERSION (default: the default pair's)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--repeat", type=int, default=3, help="passes; the fastest is reported")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repo = ModelRepository(args.models or bundled_models_dir())
    ref = args.classifier or repo.defaults()["classifier"]
    trained = load_classifier(repo.path(ref))[0]
    forms = {"trained": trained, "folded": trained.folded()}
    precision = resolve_precision(args.precision, "cpu")
    faces, source = load_faces(args.faces, args.data)
    n, rows = len(faces), []
    for model in forms.values():
        classify(model, faces[:2], precision, True)  # warm-up: oneDNN's primitives
    for b in args.batch:
        best = dict.fromkeys(forms, float("inf"))
        served: dict[str, list[torch.Tensor]] = {}
        for _ in range(args.repeat):
            spent = dict.fromkeys(forms, 0.0)
            served = {name: [] for name in forms}
            for s in range(0, n, b):
                for name, model in forms.items():
                    t0 = time.perf_counter()
                    probs = classify(model, faces[s : s + b], precision, True)
                    spent[name] += time.perf_counter() - t0
                    served[name].append(probs.argmax(1))
            best = {name: min(best[name], spent[name]) for name in forms}
        same = int((torch.cat(served["trained"]) == torch.cat(served["folded"])).sum())
        ms = {name: best[name] / n * 1e3 for name in forms}
        rows.append({"batch": b, "trained_ms": round(ms["trained"], 3),
                     "folded_ms": round(ms["folded"], 3),
                     "x": f"{ms['trained'] / ms['folded']:.2f}x",
                     "agree": f"{same}/{n}"})  # fmt: skip
    print(f"faces: {source}; classifier {ref}; precision {precision}; flip TTA (one forward of "
          f"both views); torch threads {torch.get_num_threads()}")  # fmt: skip
    return finish("classifier_fold", argv, COLUMNS, rows, args.json, classifier=ref,
                  precision=precision, face_source=source)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
