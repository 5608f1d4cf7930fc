"""The served classifier's inference forms, side by side: as trained, with its BatchNorms
folded into its convolutions (``FERClassifier.folded``), and as served (folded, and at bf16
its residual stages' convolutions kept in bf16 by ``service.precision.prepare_model``).

One process, the default classifier (or ``--classifier``), flip TTA as one forward of both
views at the server's precision. The first two forms keep float32 weights, which autocast
casts on every call; the third runs ``service.model_api.classify`` itself. For each
``--batch`` size the forms take turns call by call on the same faces (all see the same load);
a row gives each form's ms/face (fastest of ``--repeat`` passes over ``--faces`` faces), the
served form's speed-up over the trained one, and on how many faces the served expression
(argmax) is the same for the trained and the served form.

    .venv/bin/python -m benchmarks.classifier_fold --data ../shared/data/fer2013.npz

Agreement with fp32 as trained, the figure the precision target is about, is measured on every
release pair by benchmarks/precision_agreement.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from benchmarks.common import add_common_args, benchmark_parser, finish, load_faces
from core.artifacts import ModelRepository, bundled_models_dir, load_classifier
from core.classifier import FERClassifier
from service.model_api import classify
from service.precision import Precision, inference_mode, prepare_input, resolve_precision

COLUMNS = [("batch", "faces per call"), ("trained_ms", "as trained ms/face"),
           ("folded_ms", "folded ms/face"), ("served_ms", "served ms/face"),
           ("x", "served speed-up"), ("agree", "same expression")]  # fmt: skip


def float32_weights(model: FERClassifier, precision: Precision) -> Callable[[Tensor], Tensor]:
    """``classify`` without ``prepare_model``'s bf16 weights (channels_last kept)."""
    if precision == "bf16":
        model.to(memory_format=torch.channels_last)

    def run(x: Tensor) -> Tensor:
        views = torch.cat([x, x.flip(-1)])
        with inference_mode(precision, "cpu"):
            p = model.predict_proba(prepare_input(views, precision)).float()
        return (p[: len(x)] + p[len(x) :]) / 2

    return run


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
    precision = resolve_precision(args.precision, "cpu")

    def trained() -> FERClassifier:
        return load_classifier(repo.path(ref))[0]  # one copy per form: each is prepared its way

    served = trained().folded()
    forms = {
        "trained": float32_weights(trained(), precision),
        "folded": float32_weights(trained().folded(), precision),
        "served": lambda x: classify(served, x, precision, True),
    }
    faces, source = load_faces(args.faces, args.data)
    n, rows = len(faces), []
    for run in forms.values():
        run(faces[:2])  # warm-up: oneDNN's primitives; the served form's bf16 weights
    for b in args.batch:
        best = dict.fromkeys(forms, float("inf"))
        out: dict[str, list[torch.Tensor]] = {}
        for _ in range(args.repeat):
            spent = dict.fromkeys(forms, 0.0)
            out = {name: [] for name in forms}
            for s in range(0, n, b):
                for name, run in forms.items():
                    t0 = time.perf_counter()
                    probs = run(faces[s : s + b])
                    spent[name] += time.perf_counter() - t0
                    out[name].append(probs.argmax(1))
            best = {name: min(best[name], spent[name]) for name in forms}
        same = int((torch.cat(out["trained"]) == torch.cat(out["served"])).sum())
        ms = {name: round(best[name] / n * 1e3, 3) for name in forms}
        rows.append({"batch": b, "trained_ms": ms["trained"], "folded_ms": ms["folded"],
                     "served_ms": ms["served"], "x": f"{ms['trained'] / ms['served']:.2f}x",
                     "agree": f"{same}/{n}"})  # fmt: skip
    print(f"faces: {source}; classifier {ref}; precision {precision}; flip TTA (one forward of "
          f"both views); torch threads {torch.get_num_threads()}")  # fmt: skip
    return finish("classifier_fold", argv, COLUMNS, rows, args.json, classifier=ref,
                  precision=precision, face_source=source)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
