"""Rate control before and after issue 35: a byte target with the default codec alone, and
with the release set's operating points (what ``fercomp classify --target-bytes N`` and
``fercomp stream --budget-bps B`` choose from when no ``--codec`` is given).

For each target and each candidate set the split's first ``--faces`` faces are encoded by the
edge client's ``EdgeEncoder`` (ONNX Runtime + numpy; untimed); printed per row: faces over the
target (no candidate fits: the smallest is sent, flagged), container bytes per face (mean, max)
and the operating points used. With ``--serve`` the picks are also classified by a real
in-process server on the staged release set (default settings: flip TTA, each codec read by the
classifier it was made for) and the accuracy as served is added.

    .venv/bin/python -m benchmarks.rate_control --data ../shared/data/fer2013.npz --faces 64 \\
        --target 200
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import benchmark_parser, finish, load_split, local_server
from client.encoder import EdgeEncoder
from core.labels import EXPRESSIONS
from core.manifest import ModelRepository, bundled_models_dir

COLUMNS = [
    ("target", "target B"), ("candidates", "candidates"), ("faces", "faces"),
    ("over", "over the target"), ("mean_bytes", "bytes/face"), ("max_bytes", "max B"),
    ("served", "accuracy as served"), ("used", "operating points used (faces)"),
]  # fmt: skip


def short(ref: str) -> str:
    return ref.removeprefix("face-hyperprior-")


def serve(target: str, payloads: list[bytes]) -> list[str]:
    import grpc

    from proto.fercomp.v1 import fercomp_pb2, fercomp_pb2_grpc

    def requests() -> Iterator[fercomp_pb2.ClassifyRequest]:
        for p in payloads:
            yield fercomp_pb2.ClassifyRequest(bitstream=p)

    with grpc.insecure_channel(target) as channel:
        stub = fercomp_pb2_grpc.FerServiceStub(channel)  # type: ignore[no-untyped-call]
        out = sorted(stub.ClassifyStream(requests(), timeout=3600), key=lambda r: r.index)
    failed = [r for r in out if r.HasField("error")]
    if failed:
        raise RuntimeError(f"{len(failed)} faces failed, first: {failed[0].error.message}")
    return [r.expression_name for r in out]


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.rate_control", __doc__)
    p.add_argument("--data", type=Path, required=True, help="FER2013 .npz (images, labels, split)")
    p.add_argument("--split", default="PublicTest")
    p.add_argument("--faces", type=int, default=64, help="first N faces (default 64; 0: all)")
    p.add_argument(
        "--target", type=int, action="append", default=[], metavar="BYTES",
        help="byte target per face; repeatable (default 100, 150, 200, 250, 300)",
    )  # fmt: skip
    p.add_argument("--models", type=Path, default=None, help="model repository (default: bundled)")
    p.add_argument("--serve", action="store_true", help="add the accuracy as served")
    p.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = p.parse_args(argv)
    faces, labels = load_split(args.data, args.split, args.faces)
    x = faces.astype(np.float32)[:, None] / 255.0
    root = args.models or bundled_models_dir()
    default = ModelRepository(root).defaults()["codec"]
    encoders = {
        "default codec": EdgeEncoder.from_repository(root, [default]),
        "release points": EdgeEncoder.release(root=root),
    }
    print("release operating points:", ", ".join(short(r) for r in encoders["release points"].refs))
    picks: list[tuple[dict[str, Any], list[bytes]]] = []
    for target in args.target or [100, 150, 200, 250, 300]:
        for name, enc in encoders.items():
            res = [
                e for i in range(0, len(x), 256) for e in enc.encode_batch(x[i : i + 256], target)
            ]
            sizes = np.array([e.size for e in res])
            used = Counter(short(e.codec_ref) for e in res).most_common()
            row = {
                "target": target, "candidates": name, "faces": len(res),
                "over": int(sum(e.over_budget for e in res)),
                "mean_bytes": float(sizes.mean()), "max_bytes": int(sizes.max()),
                "served": None, "used": ", ".join(f"{r} ({n})" for r, n in used),
                "codecs": dict(used),
            }  # fmt: skip
            picks.append((row, [e.payload for e in res]))
    if args.serve:
        from core.release import stage_release

        with tempfile.TemporaryDirectory(prefix="fercomp-rate-") as tmp:
            models = stage_release(ModelRepository(root), Path(tmp) / "models").dest
            with local_server(models, Path(tmp) / "predictions.sqlite3") as target:
                for row, payloads in picks:
                    got = np.array([EXPRESSIONS.index(e) for e in serve(target, payloads)])
                    row["served"] = f"{(got == labels).mean():.2%}"
                    row["accuracy"] = float((got == labels).mean())
    print(f"{args.data.name} {args.split}: first {len(labels)} faces")
    return finish("rate_control", argv, COLUMNS, [r for r, _ in picks], args.json)


if __name__ == "__main__":
    raise SystemExit(main())
