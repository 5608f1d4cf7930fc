"""A face and its mirror image, end to end: the edge client (EdgeCodec) and a real server.

Every face of the split and its left-right mirror go through ``FerClient.classify_many`` (the
client's crop, canonical orientation, edge encode, gRPC) to an in-process ``Server`` with its
default settings (decoder, flip TTA, bf16 where the CPU has it) serving the default pair
(``defaults.json``: a repository of just those two artifacts, copied), once with the client's
canonical orientation (the default) and once without (``canonical_orientation=False``: images
sent as given). Per way, printed:

* `same bitstream`: faces whose bitstream equals their mirror's, byte for byte;
* `agreement`: faces whose expression as served equals their mirror's;
* `max abs dp, same bitstream`: the largest probability difference between a face and its
  mirror among those with the same bitstream (the server's batch numerics: the same face in
  batches of other sizes);
* `accuracy (faces)` / `accuracy (mirrors)`: accuracy as served against the labels;
* `bytes/face`: container bytes per face (faces and mirrors);
* `flipped by the client`: images (of faces + mirrors) the client sent as their mirror.

    .venv/bin/python -m benchmarks.mirror_agreement --data ../shared/data/fer2013.npz \\
        --split PublicTest --json docs/results/mirror-agreement-publictest.json
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import benchmark_parser, finish, load_split, local_server
from client.encoder import EdgeEncoder
from client.faces import prepare_face
from client.results import Prediction
from client.sdk import FerClient
from core.labels import EXPRESSIONS
from core.manifest import ModelRepository, bundled_models_dir

COLUMNS = [
    ("client", "client"), ("faces", "faces"), ("same_bitstream", "same bitstream"),
    ("agreement", "agreement"), ("max_dp_same", "max abs dp, same bitstream"),
    ("accuracy_faces_pct", "accuracy (faces)"), ("accuracy_mirrors_pct", "accuracy (mirrors)"),
    ("bytes_per_face_str", "bytes/face"), ("flipped", "flipped by the client"),
    ("seconds", "s"),
]  # fmt: skip


def default_pair_repo(models: Path, dest: Path) -> Path:
    """A model repository holding only ``models``' default codec and classifier (copied)."""
    repo = ModelRepository(models)
    defaults = repo.defaults()
    for ref in (defaults["codec"], defaults["classifier"]):
        shutil.copytree(repo.path(ref), dest / ref)
    (dest / "defaults.json").write_text(json.dumps(defaults))
    return dest


def run_way(
    target: str,
    encoder: EdgeEncoder,
    faces: np.ndarray,
    labels: np.ndarray,
    canonical: bool,
    concurrency: int,
) -> dict[str, Any]:
    mirrors = np.ascontiguousarray(faces[:, :, ::-1])
    start = time.perf_counter()
    with FerClient(target, codec=encoder, canonical_orientation=canonical, timeout=60.0) as client:
        res = client.classify_many([*faces, *mirrors], concurrency=concurrency)
        # What the client sent, face by face, as classify_many prepares and encodes it.
        enc, payloads, flipped = client.encoder, [], 0
        for batch in (faces, mirrors):
            for i in range(0, len(batch), 256):
                crops = [prepare_face(f, canonical=canonical) for f in batch[i : i + 256]]
                flipped += sum(c.mirrored for c in crops)
                payloads += [e.payload for e in enc.encode_batch([c.array for c in crops])]
    seconds = time.perf_counter() - start
    n = len(faces)
    preds = [r for r in res if isinstance(r, Prediction)]
    assert len(preds) == 2 * n, "a face failed"
    expr = np.array([EXPRESSIONS.index(p.expression) for p in preds])
    probs = np.array([[p.probabilities[e] for e in EXPRESSIONS] for p in preds])
    same = np.array([payloads[i] == payloads[n + i] for i in range(n)])
    dp = np.abs(probs[:n] - probs[n:]).max(axis=1)
    sent = [p.bytes_sent for p in preds]
    assert sent == [len(p) for p in payloads], "the client sent other bytes than it encoded"
    disagree = np.flatnonzero(expr[:n] != expr[n:])
    return {
        "client": "canonical orientation" if canonical else "as given",
        "faces": n,
        "same_bitstream": f"{int(same.sum()):,} ({same.mean():.2%})",
        "agreement": f"{int(n - len(disagree)):,} ({1 - len(disagree) / n:.2%})",
        "max_dp_same": f"{dp[same].max():.1e}" if same.any() else None,
        "accuracy_faces": float((expr[:n] == labels).mean()),
        "accuracy_mirrors": float((expr[n:] == labels).mean()),
        "bytes_per_face": float(np.mean(sent)),
        "bytes_per_face_str": f"{np.mean(sent):.2f}",
        "accuracy_faces_pct": f"{(expr[:n] == labels).mean():.2%}",
        "accuracy_mirrors_pct": f"{(expr[n:] == labels).mean():.2%}",
        "flipped": f"{flipped:,} of {2 * n:,}",
        "seconds": round(seconds, 1),
        "agreeing": int(n - len(disagree)),
        "same_bitstreams": int(same.sum()),
        "disagreeing_with_same_bitstream": int(same[disagree].sum()),
        "bytes_faces": float(np.mean(sent[:n])),
        "bytes_mirrors": float(np.mean(sent[n:])),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.mirror_agreement", __doc__)
    p.add_argument("--data", type=Path, required=True, help="FER2013 .npz (images, labels, split)")
    p.add_argument("--split", default="PublicTest")
    p.add_argument("--faces", type=int, default=0, help="first N faces only (default: all)")
    p.add_argument("--models", type=Path, default=None, help="model repository (default: bundled)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)
    if not args.data.is_file():
        p.error(f"no dataset at {args.data}")
    faces, labels = load_split(args.data, args.split, args.faces)

    root = args.models or bundled_models_dir()
    # The client's side: the default codec from its edge bundle (EdgeCodec), as FerClient
    # loads it without a byte target.
    encoder = EdgeEncoder.from_repository(root, [ModelRepository(root).defaults()["codec"]])
    rows = []
    with tempfile.TemporaryDirectory(prefix="fercomp-mirror-") as tmp:
        models = default_pair_repo(root, Path(tmp) / "models")
        with local_server(models, Path(tmp) / "predictions.sqlite3") as target:
            for canonical in (True, False):
                rows.append(run_way(target, encoder, faces, labels, canonical, args.concurrency))
    pair = " + ".join(ModelRepository(root).defaults().values())
    print(f"{args.data.name} {args.split}: {len(labels)} faces and their mirrors; {pair}")
    return finish("mirror_agreement", argv, COLUMNS, rows, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
