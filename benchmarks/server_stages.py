"""Where a served face's CPU time goes, stage by stage: before (v1, fp32, two TTA forwards) and
after (v2, the server's precision, one TTA forward of both views), measured side by side.

    .venv/bin/python -m benchmarks.server_stages --data ../shared/data/fer2013.npz --threads 1

The default pair (models/defaults.json, or ``--codec`` / ``--classifier``) and ``--faces``
faces, pre-encoded by the torch encoder in both formats (not timed), then, ``--batch`` faces
per call, each stage timed on its own in one process:

* parse: ``FaceCodec.parse`` of a v1 container / of a v2 container;
* entropy: v1's CompressAI rANS behind the zero-padded read bound, z then y, with its float64
  torch hyper path (it sits between z and y) / v2's constriction ANS, z and y
  (``core/ans_coding.py``);
* hyper: inside v1's entropy row / v2's float64 numpy ``h_s`` (``core/latent_tables.py``);
* synthesis: g_s in fp32 / at the served precision (``service/precision.py``);
* classifier: flip TTA as two fp32 forwards / as one forward of both views at the served
  precision, BatchNorms folded into the convolutions (``FERClassifier.folded``), as served.

``--precision`` is the setting the after column resolves (``auto``: bf16 where the CPU has
bf16 units). Inputs of both columns are identical; the last two rows give the total and the
faces/s it implies for one thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help=".npz of faces (default: photo crops)")
    ap.add_argument("--faces", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="passes; the fastest pass is reported")
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--codec", default=None, help="NAME/VERSION (default: the default pair)")
    ap.add_argument("--classifier", default=None)
    ap.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    ap.add_argument("--device", default="cpu", help="g_s and the classifier (entropy: CPU)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)  # before numpy's BLAS starts its threads
    import numpy as np
    import torch

    from benchmarks.common import finish, load_faces
    from core.artifacts import ModelRepository, load_classifier, load_codec
    from core.codec import latent_shapes
    from service.model_api import classify, synthesize
    from service.precision import resolve_precision

    torch.set_num_threads(a.threads)
    repo = ModelRepository(a.models)
    defaults = repo.defaults()
    codec, _ = load_codec(repo.path(a.codec or defaults["codec"]), a.device)
    clf, _ = load_classifier(repo.path(a.classifier or defaults["classifier"]), a.device)
    clf.eval()
    precision = resolve_precision(a.precision, a.device)
    sync = torch.cuda.synchronize if a.device.startswith("cuda") else (lambda: None)
    faces, source = load_faces(a.faces, a.data)
    v1 = codec.encode(faces, version=1)
    v2 = codec.encode(faces)
    n = len(faces)
    batches = [slice(i, i + a.batch) for i in range(0, n, a.batch)]
    pv1 = [codec.parse(p) for p in v1]
    pv2 = [codec.parse(p) for p in v2]
    padded = pv2[0].header.padded_size
    y_shape, z_shape = latent_shapes(padded)
    _, z_count = codec.symbol_counts(padded)
    t = codec.tables
    h, w = pv2[0].header.height, pv2[0].header.width

    def v2_entropy_and_hyper(b: slice) -> tuple[float, float, Any]:
        s = time.perf_counter()
        started = [codec._coder.start(c.strings[0], z_count) for c in pv2[b]]
        z_sym = np.stack([f.z_symbols for f in started]).reshape(-1, t.N, *z_shape)
        z_hat = z_sym.astype(np.float32) + t.z_medians[None, :, None, None]
        e = time.perf_counter() - s
        s = time.perf_counter()
        idx, means = t.gaussian_params(z_hat, y_shape)
        hy = time.perf_counter() - s
        s = time.perf_counter()
        y = np.stack([codec._coder.finish(f, idx[j]) for j, f in enumerate(started)])
        e += time.perf_counter() - s
        return e, hy, torch.from_numpy(y + means).float()

    y_hat = torch.cat([codec.decode_latents(pv2[b]) for b in batches])
    images = torch.cat([synthesize(codec, y_hat[b], h, w, "fp32") for b in batches]).to(a.device)

    def two_forwards(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (clf.predict_proba(x) + clf.predict_proba(x.flip(-1))) / 2

    def timed(fn: Callable[[slice], Any]) -> float:
        best = float("inf")
        for _ in range(a.repeat):
            s = time.perf_counter()
            for b in batches:
                fn(b)
            sync()
            best = min(best, time.perf_counter() - s)
        return best / n * 1e3

    def timed_v2() -> tuple[float, float]:
        best = (float("inf"), float("inf"))
        for _ in range(a.repeat):
            parts = [v2_entropy_and_hyper(b)[:2] for b in batches]
            total = (sum(p[0] for p in parts), sum(p[1] for p in parts))
            best = min(best, total, key=sum)
        return best[0] / n * 1e3, best[1] / n * 1e3

    with torch.no_grad():
        synthesize(codec, y_hat[:2], h, w, precision)  # warm autocast / oneDNN kernels
        served = clf.folded()  # as the server loads it (service/registry.py)
        classify(served, images[:2], precision, True)
        v2_ent, v2_hyper = timed_v2()
        rows: list[tuple[str, float | None, float | None]] = [
            ("parse", timed(lambda b: [codec.parse(p) for p in v1[b]]),
             timed(lambda b: [codec.parse(p) for p in v2[b]])),
            ("entropy", timed(lambda b: codec.decode_latents(pv1[b])), v2_ent),
            ("hyper", None, v2_hyper),
            ("synthesis", timed(lambda b: synthesize(codec, y_hat[b], h, w, "fp32")),
             timed(lambda b: synthesize(codec, y_hat[b], h, w, precision))),
            ("classifier (flip TTA)", timed(lambda b: two_forwards(images[b])),
             timed(lambda b: classify(served, images[b], precision, True))),
        ]  # fmt: skip
    before = sum(r[1] or 0.0 for r in rows)
    after = sum(r[2] or 0.0 for r in rows)
    out = [
        {"stage": s, "before": _round(b), "after": _round(af), "x": _ratio(b, af)}
        for s, b, af in rows
    ]
    out.append({"stage": "total ms/face", "before": round(before, 3), "after": round(after, 3),
                "x": _ratio(before, after)})  # fmt: skip
    out.append({"stage": "faces/s (1 core)", "before": round(1e3 / before, 1),
                "after": round(1e3 / after, 1), "x": _ratio(before, after)})  # fmt: skip
    print(
        f"faces: {source}; batch {a.batch}; threads {a.threads}; device {a.device}; "
        f"after = v2 + {precision}\n"
    )
    columns = [("stage", "stage"), ("before", "before ms/face"), ("after", "after ms/face"),
               ("x", "before/after")]  # fmt: skip
    return finish("server_stages", argv, columns, out, a.json)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


if __name__ == "__main__":
    sys.exit(main())
