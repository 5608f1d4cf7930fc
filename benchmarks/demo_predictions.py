"""What each operating point predicts on the demo photos (`make demo`'s faces), as a table.

PublicTest figures say how often a pair is right on FER2013's own crops; these say what a user
who runs the demo sees, on faces cropped by the client's own detector from a photo (Grace
Hopper, matplotlib's sample image) and four variations of it (mirror, darker, rotated, tighter).
No labels: the point is agreement — with the uncompressed baseline, and between a face and its
variations. Everything runs in-process on the served path: ``prepare_face(detect=True)`` ->
encode -> bytes -> decode -> classifier with flip TTA (the server's default).

    python -m benchmarks.demo_predictions            # the defaults below + the release set's pairs
    python -m benchmarks.demo_predictions --baseline fer-resnet18/4 --webp 10=fer-resnet18/4 \
        --pair face-hyperprior-joint-l0.003/3=fer-resnet18-joint-l0.003/3 --json OUT.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import format_table, pil_decode, pil_encode, write_json
from cli.demo import demo_faces
from client.faces import prepare_face
from core.artifacts import ModelRepository, bundled_models_dir, load_classifier, load_codec
from core.classifier import EXPRESSIONS, FERClassifier
from core.preprocess import tensor_to_uint8
from core.release import release_pairs
from training.recipe import flip_tta_logits

DEFAULT_BASELINE = "fer-resnet18/13"
DEFAULT_WEBP = ["10=fer-resnet18/13", "10=fer-resnet18-webp/2"]
# Without --pair: the release set's pairs (core.release.release_pairs): the served default,
# then every released codec with its released paired classifier.


@torch.inference_mode()
def served_proba(clf: FERClassifier, x: torch.Tensor) -> torch.Tensor:
    """Probabilities with flip TTA, as ``service/model_api.py`` serves them."""
    return flip_tta_logits(clf.eval(), x).exp()


def _split(spec: str) -> tuple[str, str]:
    left, sep, right = spec.partition("=")
    if not sep or not left or not right:
        raise ValueError(f"expected LEFT=CLASSIFIER, got {spec!r}")
    return left, right


def measure(
    faces: torch.Tensor,
    repo: ModelRepository,
    baseline: str,
    webp: list[tuple[str, str]],
    pairs: list[tuple[str, str]],
) -> list[dict[str, Any]]:
    """One column per setting: predictions (label, probability) per face and bytes per face."""
    classifiers: dict[str, FERClassifier] = {}

    def clf(ref: str) -> FERClassifier:
        if ref not in classifiers:
            classifiers[ref] = load_classifier(repo.path(ref))[0]
        return classifiers[ref]

    settings: list[tuple[str, torch.Tensor, float | None]] = [
        (f"uncompressed + {baseline}", served_proba(clf(baseline), faces), None)
    ]
    pixels = [tensor_to_uint8(f) for f in faces]
    for quality, ref in webp:
        files = [pil_encode(p, "WEBP", int(quality)) for p in pixels]
        x = torch.stack([torch.from_numpy(pil_decode(b).copy()).float()[None] / 255 for b in files])
        size = float(np.mean([len(b) for b in files]))
        settings.append((f"WebP q{quality} + {ref}", served_proba(clf(ref), x), size))
    for codec_ref, ref in pairs:
        codec = load_codec(repo.path(codec_ref))[0]
        payloads = codec.encode(faces)
        x = torch.stack(codec.decode(payloads))
        size = float(np.mean([len(b) for b in payloads]))
        settings.append((f"{codec_ref} + {ref}", served_proba(clf(ref), x), size))
    return [
        {
            "setting": name,
            "bytes_per_face": size,
            "labels": [EXPRESSIONS[int(i)] for i in p.argmax(1)],
            "p": [round(float(v), 3) for v in p.max(1).values],
        }
        for name, p, size in settings
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=None, help="model repository (default: bundled)")
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="classifier on the raw faces")
    ap.add_argument("--webp", action="append", metavar="Q=CLASSIFIER", help="WebP settings")
    ap.add_argument("--pair", action="append", metavar="CODEC=CLASSIFIER", help="learned pairs")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write JSON here")
    args = ap.parse_args(argv)
    # Checked before anything loads: a typo must not cost a model load and a face detection.
    webp = [_split(s) for s in args.webp or DEFAULT_WEBP]
    pairs = [_split(s) for s in args.pair or []]
    for quality, _ in webp:
        if not quality.isdigit() or not 1 <= int(quality) <= 100:
            raise ValueError(f"--webp quality must be 1..100, got {quality!r}")
    torch.set_num_threads(1)
    repo = ModelRepository(args.models or bundled_models_dir())
    pairs = pairs or release_pairs(repo)
    with tempfile.TemporaryDirectory(prefix="fercomp-demo-") as tmp:
        paths = demo_faces(Path(tmp))
        crops = [prepare_face(p, detect=True) for p in paths]
    faces = torch.stack([torch.from_numpy(c.array) for c in crops])
    names = [p.stem for p in paths]
    cols = measure(faces, repo, args.baseline, webp, pairs)
    rows: list[dict[str, Any]] = []
    ref = cols[0]["labels"]  # the uncompressed baseline's reading
    for c in cols:
        row: dict[str, Any] = {"setting": c["setting"], "bytes": c["bytes_per_face"]}
        row.update(
            {n: f"{lab} {p:.2f}" for n, lab, p in zip(names, c["labels"], c["p"], strict=True)}
        )
        row["agree"] = f"{sum(a == b for a, b in zip(c['labels'], ref, strict=True))}/{len(ref)}"
        rows.append(row)
    columns = [("setting", "setting"), ("bytes", "B/face"), *((n, n) for n in names)]
    print(format_table([*columns, ("agree", "= uncompressed")], rows))
    write_json(
        args.json, {"faces": names, "detected": [c.detected for c in crops], "settings": cols}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
