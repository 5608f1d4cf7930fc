"""Where a face's bytes go: container framing, entropy-coder overhead, and the information the
codec's own entropy models assign to ``y`` and ``z``.

    .venv/bin/python -m benchmarks.payload_budget --data ../shared/data/fer2013.npz --faces 512 \
        --codec face-hyperprior-joint-l0.003/3 --codec face-hyperprior-joint-l0.025/3

For each learned codec, on the same faces (one string per face, the default layout):

- ``container`` is the whole ``.frc`` payload a unary call sends; ``stream`` what a face costs
  inside a ``ClassifyStream`` once the codec's shared header has been sent (docs/BITSTREAM.md);
- ``framing`` is the container minus its rANS string (header, sizes, CRC);
- ``y info`` / ``z info`` are ``-log2`` of the likelihoods the model's entropy models give the
  quantized latents (what an ideal entropy coder would spend), and ``z ch`` the number of
  ``z`` channels that carry more than 0.1 bit per face on average;
- ``coder`` is the rANS string minus that information: the coder's flush and rounding.

It measures what is worth attacking at low rates (a smaller hyper path only pays if ``z info``
is large; the framing only shrinks in a stream).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    add_codec_arg,
    add_common_args,
    benchmark_parser,
    codec_dirs,
    finish,
    load_faces,
)
from core import bitstream
from core.artifacts import load_codec
from core.codec import pad_to_alignment
from core.stream_framing import STREAM_HEADER_LEN

COLUMNS = [
    ("codec", "codec"),
    ("align", "align"),
    ("container", "container B/face"),
    ("stream", "stream B/face"),
    ("framing", "framing B"),
    ("coder", "coder B"),
    ("y_info", "y info B"),
    ("z_info", "z info B"),
    ("z_channels", "z ch > 0.1 bit"),
]


def budget_row(art_dir: Path, faces: torch.Tensor) -> dict[str, Any]:
    codec, manifest = load_codec(art_dir)
    payloads = codec.encode(faces)
    strings = [sum(len(s) for s in bitstream.parse(p).strings) for p in payloads]
    with torch.no_grad():  # codec.model is in eval mode: the latents are rounded as coded
        x = pad_to_alignment(faces.to(codec.device), codec.align_log2)
        bits = {k: -torch.log2(v.double()) for k, v in codec.model(x)["likelihoods"].items()}
    n = len(faces)
    info = {k: b.sum().item() / 8 / n for k, b in bits.items()}
    z_bits = bits["z"].sum(dim=(0, 2, 3)) / n
    container = sum(len(p) for p in payloads) / n
    string = sum(strings) / n
    return {
        "codec": manifest.ref,
        "align": codec.align_log2,
        "container": container,
        "stream": container - STREAM_HEADER_LEN,
        "framing": container - string,
        "coder": string - info["y"] - info["z"],
        "y_info": info["y"],
        "z_info": info["z"],
        "z_channels": f"{int((z_bits > 0.1).sum())}/{z_bits.numel()}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.payload_budget", __doc__)
    add_common_args(p, faces=256, quality=False)  # no JPEG/WebP here
    add_codec_arg(p)
    args = p.parse_args(argv)
    if args.faces < 1:
        p.error("--faces must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    faces, source = load_faces(args.faces, args.data)
    rows = [budget_row(art_dir, faces) for art_dir in codec_dirs(args.codec, args.models)]

    print(f"faces: {source}")
    after = (
        "\ncontainer = framing + coder + y info + z info (bytes per face, means); "
        f"stream = container - the {STREAM_HEADER_LEN}-byte header a stream sends once."
    )
    return finish(
        "payload_budget", argv, COLUMNS, rows, args.json, after, faces=len(faces),
        face_source=source,
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
