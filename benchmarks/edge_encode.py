"""Edge-side cost of encoding a face, and the server-side cost of decoding it.

For each learned codec (the bundled default, or ``--codec`` artifacts) and for JPEG / WebP at
the quality the client's bandwidth summary uses, this times encoding 48x48 faces one at a time
and in batches, and decoding them back, and reports bytes per face:

    .venv/bin/python -m benchmarks.edge_encode --faces 64 --threads 1 --json out.json

Each learned codec is encoded both ways, side by side in one run: by the torch ``FaceCodec``
(``torch``, format v2, and v1's two strings) and by the torch-free client's ``EdgeCodec``
(``edge``: the codec's ``edge/`` bundle in ONNX Runtime + the numpy v2 encoder; a codec without
a bundle has no edge rows). ``--threads`` is both torch's and ONNX Runtime's intra-op threads
(ONNX Runtime: 1 when not given, the client's default). The edge's batch-1 encode is also split
into its stages: ``analysis`` (ONNX Runtime g_a + h_a) and ``entropy`` (the float64 hyper path,
symbols, ANS, container), the rest.

Times are wall-clock milliseconds per face (a batch's time divided by its size), median and
90th percentile over every call of every repeat, after one untimed warm-up call. Learned
"decode" is what the server does per stream: parse the container, entropy-decode (CPU) and run
the synthesis transform; it does not include the classifier.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import (
    add_codec_arg,
    add_common_args,
    benchmark_parser,
    codec_dirs,
    format_table,
    load_faces,
    machine,
    mean_size,
    ms_stats,
    pil_decode,
    pil_encode,
    webp_available,
    write_json,
)
from core.artifacts import load_codec
from core.edge_codec import EdgeCodec, has_bundle
from core.preprocess import tensor_to_uint8

COLUMNS = [
    ("codec", "codec"),
    ("step", "step"),
    ("batch", "batch"),
    ("p50_ms", "median ms/face"),
    ("p90_ms", "p90 ms/face"),
    ("bytes_per_face", "bytes/face"),
]
PIL_NAMES = {"JPEG": "JPEG", "WEBP": "WebP"}


def per_face_times(fn: Callable[[Any], object], batches: Sequence[Any], repeat: int) -> list[float]:
    """Seconds per face for every call ``fn(batch)``; one untimed warm-up call first so lazy
    initialisation (allocator, thread pool, Pillow plugins) is not billed to the first face."""
    fn(batches[0])
    out = []
    for _ in range(repeat):
        for batch in batches:
            t0 = time.perf_counter()
            fn(batch)
            out.append((time.perf_counter() - t0) / len(batch))
    return out


def chunks(items: Sequence[Any], size: int) -> list[Any]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def row(codec: str, step: str, batch: int, size: float, times: list[float]) -> dict:
    stats = ms_stats(times, (50, 90))
    return {
        "codec": codec,
        "step": step,
        "batch": batch,
        "bytes_per_face": size,
        **stats,
        "samples": len(times),
    }


def learned_rows(
    art_dir: Path, faces: torch.Tensor, batch: int, repeat: int, edge_threads: int
) -> list[dict]:
    """torch: format v2 (one ANS string per face, what clients write) and v1's CompressAI two
    strings (``[y, z]``), which decode to the same image (docs/CODEC.md); then the edge."""
    codec, manifest = load_codec(art_dir)
    rows = []
    for merged, layout in ((True, "torch, v2"), (False, "torch, v1 2 strings")):
        encode = partial(codec.encode, merged=merged)
        payloads = encode(faces)
        size = mean_size(payloads)
        name = f"{manifest.ref} ({layout})"
        for b in sorted({1, min(batch, len(faces))}):
            enc = per_face_times(encode, chunks(faces, b), repeat)
            dec = per_face_times(codec.decode, chunks(payloads, b), repeat)
            rows += [row(name, "encode", b, size, enc), row(name, "decode", b, size, dec)]
    if has_bundle(art_dir):
        rows += edge_rows(art_dir, faces.numpy(), batch, repeat, edge_threads)
    return rows


def edge_rows(
    art_dir: Path, faces: np.ndarray, batch: int, repeat: int, threads: int
) -> list[dict]:
    """The torch-free client's encoder, at batch 1 and ``batch``, and its batch-1 stages."""
    edge = EdgeCodec.load(art_dir, threads=threads)
    payloads = edge.encode(faces)
    size = mean_size(payloads)
    name = f"{edge.manifest.ref} (edge, v2)"
    rows = []
    for b in sorted({1, min(batch, len(faces))}):
        rows.append(
            row(name, "encode", b, size, per_face_times(edge.encode, chunks(faces, b), repeat))
        )
    singles = chunks(faces, 1)
    rows.append(
        row(name, "encode: analysis", 1, size, per_face_times(edge.analyse, singles, repeat))
    )
    h, w = faces.shape[-2:]
    analysed = [[edge.analyse(f)] for f in singles]  # one (y, z) per call
    rest = per_face_times(lambda yz: edge.encode_analysed(*yz[0], (h, w)), analysed, repeat)
    rows.append(row(name, "encode: entropy", 1, size, rest))
    return rows


def comparison_lines(rows: list[dict]) -> list[str]:
    """Per codec: edge vs torch encode at each batch size (medians of this run)."""
    out = []
    for r in rows:
        if not r["codec"].endswith("(edge, v2)") or r["step"] != "encode":
            continue
        ref = r["codec"].removesuffix(" (edge, v2)")
        torch_row = next(
            (
                t
                for t in rows
                if t["codec"] == f"{ref} (torch, v2)"
                and t["step"] == "encode"
                and t["batch"] == r["batch"]
            ),
            None,
        )
        if torch_row:
            out.append(
                f"{ref}, batch {r['batch']}: edge {r['p50_ms']:.3f} ms/face vs torch "
                f"{torch_row['p50_ms']:.3f} ({torch_row['p50_ms'] / r['p50_ms']:.1f}x); "
                f"{r['bytes_per_face']:.1f} vs {torch_row['bytes_per_face']:.1f} B/face"
            )
    return out


def _pil_encode_all(pixels: list[np.ndarray], fmt: str, quality: int) -> list[bytes]:
    return [pil_encode(p, fmt, quality) for p in pixels]


def _pil_decode_all(files: list[bytes]) -> list[np.ndarray]:
    return [pil_decode(f) for f in files]


def pillow_rows(faces: torch.Tensor, quality: int, repeat: int) -> list[dict]:
    """JPEG and WebP have no batch API: one face per call, like an edge device would send."""
    pixels = [tensor_to_uint8(f) for f in faces]
    rows = []
    for fmt in ("JPEG", "WEBP") if webp_available() else ("JPEG",):
        files = _pil_encode_all(pixels, fmt, quality)
        size = mean_size(files)
        name = f"{PIL_NAMES[fmt]} q{quality}"
        encode = partial(_pil_encode_all, fmt=fmt, quality=quality)
        enc = per_face_times(encode, chunks(pixels, 1), repeat)
        dec = per_face_times(_pil_decode_all, chunks(files, 1), repeat)
        rows += [row(name, "encode", 1, size, enc), row(name, "decode", 1, size, dec)]
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = benchmark_parser("benchmarks.edge_encode", __doc__)
    add_common_args(p, faces=64)
    add_codec_arg(p)
    p.add_argument("--batch", type=int, default=32, help="batched-call size (default 32)")
    p.add_argument("--repeat", type=int, default=3, help="passes over the faces per row")
    args = p.parse_args(argv)
    if min(args.faces, args.batch, args.repeat) < 1:
        p.error("--faces, --batch and --repeat must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    edge_threads = args.threads or 1
    faces, source = load_faces(args.faces, args.data)

    rows: list[dict] = []
    for art_dir in codec_dirs(args.codec, args.models):
        rows += learned_rows(art_dir, faces, args.batch, args.repeat, edge_threads)
    rows += pillow_rows(faces, args.quality, args.repeat)

    print(
        f"faces: {source}; repeat {args.repeat}; torch threads {torch.get_num_threads()}, "
        f"ONNX Runtime intra-op threads {edge_threads}"
    )
    print(format_table(COLUMNS, rows))
    comparison = comparison_lines(rows)
    if comparison:
        print("\nedge (torch-free client) vs torch FaceCodec, encode, median:")
        print("\n".join(comparison))
    print(
        "\nms/face = wall time of one call / faces in it (CPU). Learned decode = parse + "
        "entropy decode + synthesis (no classifier).\nJPEG/WebP: Pillow, one face per call, "
        "WebP method=6 (as in client.bandwidth); their bytes include the file headers."
    )
    write_json(
        args.json,
        {
            "benchmark": "edge_encode",
            "argv": list(sys.argv[1:] if argv is None else argv),
            "faces": len(faces),
            "face_source": source,
            "repeat": args.repeat,
            "edge_threads": edge_threads,
            "machine": machine(),
            "comparison": comparison,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
