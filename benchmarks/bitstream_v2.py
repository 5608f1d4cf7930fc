"""Bitstream v1 vs v2 on every release codec: bytes, decoded latents, decode time, safety margin.

    .venv/bin/python -m benchmarks.bitstream_v2 --data ../shared/data/fer2013.npz --threads 1

For each codec of ``models/release.json`` (or ``--codec ART`` ...), the same faces are encoded
by the torch encoder in format v1 (CompressAI rANS, merged string) and v2 (constriction ANS), and
both are decoded as the server does (v1: guarded rANS with float64 torch hyper path, in-process
here; v2: ``core/ans_coding.py`` + the float64 numpy hyper path). Columns:

* ``v1 B`` / ``v2 B``: mean container bytes per face; ``v2/v1`` their ratio;
* ``latents``: faces whose decoded y_hat differ between v1 and v2 (expected 0);
* ``v1 ms``: v1's entropy decode with its hyper path, per face (batches of ``--batch``);
* ``v2 entropy ms`` / ``v2 hyper ms``: v2's ANS decoding (z and y) and its float64 numpy
  hyper path, per face;
* ``margin``: the smallest distance, over every face and latent, of a float64 hyper output
  from a decision boundary (a scale-table entry, or a half-step of the 1/256 mean grid),
  relative to the value: how far float64 round-off (~1e-16 relative) is from flipping a
  decision.

Timing is wall time on this machine with ``--threads`` torch/BLAS threads; compare rows of one
run only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help=".npz of faces (default: photo crops)")
    ap.add_argument("--faces", type=int, default=0, help="0: every face of --data (PublicTest)")
    ap.add_argument("--codec", action="append", default=[], help="artifact dirs (default: release)")
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    _set_threads(a.threads)  # before numpy's BLAS starts its threads
    import torch

    from benchmarks.common import finish, load_faces
    from core.artifacts import load_codec, read_manifest
    from core.codec import latent_shapes
    from core.release import listed_refs

    torch.set_num_threads(a.threads)
    n = a.faces or (10**6 if a.data else 256)
    faces, source = load_faces(n, a.data)
    dirs = [Path(c) for c in a.codec] or [
        a.models / ref
        for ref in listed_refs(a.models)
        if read_manifest(a.models / ref).kind == "codec"
    ]
    rows = []
    for art in dirs:
        codec, m = load_codec(art)
        t = codec.tables
        v1 = [codec.parse(p) for p in codec.encode(faces, version=1)]
        v2 = [codec.parse(p) for p in codec.encode(faces)]
        y_shape, z_shape = latent_shapes(v2[0].header.padded_size)
        _, z_count = codec.symbol_counts(v2[0].header.padded_size)
        t1 = te = th = 0.0
        mismatched, margin = 0, np.inf
        for i in range(0, len(v1), a.batch):
            s = time.perf_counter()
            y1 = codec.decode_latents(v1[i : i + a.batch]).numpy()
            t1 += time.perf_counter() - s
            s = time.perf_counter()
            started = [codec._coder.start(c.strings[0], z_count) for c in v2[i : i + a.batch]]
            z_sym = np.stack([f.z_symbols for f in started]).reshape(-1, t.N, *z_shape)
            z_hat = z_sym.astype(np.float32) + t.z_medians[None, :, None, None]
            te += time.perf_counter() - s
            s = time.perf_counter()
            idx, means = t.gaussian_params(z_hat, y_shape)
            th += time.perf_counter() - s
            s = time.perf_counter()
            y_sym = np.stack([codec._coder.finish(f, idx[j]) for j, f in enumerate(started)])
            te += time.perf_counter() - s
            y2 = (y_sym + means).astype(np.float32)
            mismatched += int((y1 != y2).reshape(len(y1), -1).any(axis=1).sum())
            margin = min(margin, t.decision_margin(z_hat, y_shape))
        b1 = float(np.mean([c.overhead_bytes + sum(map(len, c.strings)) for c in v1]))
        b2 = float(np.mean([c.overhead_bytes + sum(map(len, c.strings)) for c in v2]))
        k = len(v1)
        rows.append(
            {
                "codec": m.ref,
                "faces": k,
                "v1 B": round(b1, 2),
                "v2 B": round(b2, 2),
                "v2/v1": round(b2 / b1, 4),
                "latents": mismatched,
                "v1 ms": round(t1 / k * 1e3, 3),
                "v2 entropy ms": round(te / k * 1e3, 3),
                "v2 hyper ms": round(th / k * 1e3, 3),
                "margin": f"{margin:.1e}",
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"faces: {source}; threads: {a.threads}\n")
    columns = [(k, k) for k in rows[0]] if rows else []
    return finish("bitstream_v2", argv, columns, rows, a.json)


if __name__ == "__main__":
    sys.exit(main())
