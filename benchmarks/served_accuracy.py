"""Accuracy as a real server serves it: each pair's faces over gRPC, against the labels.

The release set is staged (``fercomp models --release-to``, what an image ships) and served by an
in-process ``Server`` with its default settings (decoder process, flip TTA, paired classifiers).
For each codec the client side encodes the split's faces (untimed) and sends them on one
``ClassifyStream``; the server decodes each face with the codec named in its header and picks the
classifier (the codec's paired one for a joint codec, else the active one). Printed per codec:
the classifier(s) that answered, bytes/face, served accuracy, and — with ``--eval`` JSONs of
``fercomp eval`` on the same faces — the offline as-served figure and the difference, so the
figures in docs/RESULTS.md are checked end to end through the transport.

    .venv/bin/python -m benchmarks.served_accuracy --data ../shared/data/fer2013.npz \
        --split PublicTest --eval docs/results/publictest-joint-c5-l0.025.json --json OUT.json
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import torch

from benchmarks.common import benchmark_parser, finish
from core.artifacts import ModelRepository, bundled_models_dir, load_codec
from core.labels import EXPRESSIONS
from core.release import release_pairs, stage_release
from proto.fercomp.v1 import fercomp_pb2, fercomp_pb2_grpc
from service.app import Server
from service.settings import Settings
from training.data import load_dataset
from training.eval import to_faces

COLUMNS = [
    ("codec", "codec"), ("classifier", "read by (server's choice)"), ("faces", "faces"),
    ("bytes_per_face", "bytes/face"), ("served", "served accuracy"),
    ("offline", "fercomp eval (as served)"), ("diff_pt", "diff pt"),
]  # fmt: skip


def offline_accuracy(
    eval_paths: Sequence[Path], codec: str, classifier: str, n: int
) -> float | None:
    """The as-served (flip TTA) accuracy ``fercomp eval`` recorded for ``codec`` read by
    ``classifier`` on ``n`` unperturbed faces, from the last eval JSON that has it."""
    found = None
    for path in eval_paths:
        doc = json.loads(Path(path).read_text())
        if doc.get("perturb") or doc.get("n", n) != n:
            continue  # other faces than the ones served here
        for r in doc.get("records", []):
            if r.get("artifact") == codec and classifier in r.get("accuracy_tta", {}):
                found = float(r["accuracy_tta"][classifier])
    return found


def serve_codec(stub: Any, payloads: list[bytes]) -> list[fercomp_pb2.ClassifyResponse]:
    def requests() -> Iterator[fercomp_pb2.ClassifyRequest]:
        for p in payloads:
            yield fercomp_pb2.ClassifyRequest(bitstream=p)

    out = list(stub.ClassifyStream(requests(), timeout=3600))
    failed = [r for r in out if r.HasField("error")]
    if failed:
        raise RuntimeError(f"{len(failed)} faces failed, first: {failed[0].error.message}")
    return sorted(out, key=lambda r: r.index)


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.served_accuracy", __doc__)
    p.add_argument("--data", type=Path, required=True, help="dataset (.npz, .csv or folder)")
    p.add_argument("--split", default="PublicTest")
    p.add_argument("--models", type=Path, default=None, help="model repository (default: bundled)")
    p.add_argument(
        "--codec", action="append", default=[], metavar="NAME/VERSION",
        help="codecs of the release set to send (default: every codec of its pairs)",
    )  # fmt: skip
    p.add_argument("--faces", type=int, default=0, help="first N faces only (default: all)")
    p.add_argument("--eval", type=Path, action="append", default=[], help="fercomp eval JSON")
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)
    repo = ModelRepository(args.models or bundled_models_dir())
    codecs = args.codec or [c for c, _ in release_pairs(repo)]
    images, labels = load_dataset(args.data, args.split)
    faces, labels = to_faces(images), np.asarray(labels, dtype=np.int64)
    if args.faces > 0:
        faces, labels = faces[: args.faces], labels[: args.faces]
    x = torch.from_numpy(faces).float().div_(255.0).unsqueeze(1)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fercomp-served-acc-") as tmp:
        models = stage_release(repo, Path(tmp) / "models").dest
        server = Server(
            Settings(host="127.0.0.1", grpc_port=0, http_port=0, models_dir=models,
                     device="cpu", db_path=Path(tmp) / "predictions.sqlite3")
        )  # fmt: skip
        server.start()
        assert server.ports is not None
        channel = grpc.insecure_channel(f"127.0.0.1:{server.ports.grpc}")
        try:
            stub = fercomp_pb2_grpc.FerServiceStub(channel)
            for ref in codecs:
                codec, _ = load_codec(repo.path(ref))  # the edge client's copy
                payloads = [b for i in range(0, len(x), 256) for b in codec.encode(x[i : i + 256])]
                answers = serve_codec(stub, payloads)
                predicted = np.array([EXPRESSIONS.index(r.expression_name) for r in answers])
                readers = Counter(r.classifier_version for r in answers)
                served = float((predicted == labels).mean())
                clf = readers.most_common(1)[0][0]
                offline = offline_accuracy(args.eval, ref, clf, len(labels))
                rows.append({
                    "codec": ref, "classifier": ", ".join(sorted(readers)), "faces": len(answers),
                    "bytes_per_face": sum(map(len, payloads)) / len(payloads), "served": served,
                    "offline": offline,
                    "diff_pt": None if offline is None else 100 * (served - offline),
                })  # fmt: skip
        finally:
            channel.close()
            server.stop(grace=5.0)
    print(f"{args.data.name} {args.split}: {len(labels)} faces; the staged release set")
    return finish("served_accuracy", argv, COLUMNS, rows, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
