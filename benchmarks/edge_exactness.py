"""Bit-exact across implementations: the torch-free edge encoder against the server's decoder.

    .venv/bin/python -m benchmarks.edge_exactness --data ../shared/data/fer2013.npz

For every codec of ``models/release.json`` (or each ``--codec ART``) and every PublicTest face
of ``--data`` (or ``--faces N`` of them), the edge encoder (``core.edge_codec.EdgeCodec``: ONNX
Runtime analysis + numpy hyper path + constriction, no torch) writes v2 containers and records
the latents it meant (``symbols + means``); the server's decoder (``FaceCodec.decode_latents``,
torch codec loaded from the artifact's weights) decodes them. Columns:

* ``mismatched``: faces whose decoded latents differ in any element from what the edge meant
  (the claim: 0);
* ``edge B`` / ``torch B``: mean container bytes of the edge encoder and of the torch v2
  encoder on the same faces; ``ratio`` edge/torch;
* ``symbols differ``: faces where the edge's y symbols differ from the torch encoder's (ONNX
  Runtime's float32 analysis transform vs torch's: a legitimate encoder choice, not a
  desynchronisation; the decoder never sees y);
* ``margin``: the closest any float64 hyper output came to a decision boundary, relative
  (docs/BITSTREAM.md "Bit-exact by construction").

Exit status 1 if any face mismatched, so the script doubles as a check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from core.codec import latent_shapes
from core.face_codec import FaceCodec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help=".npz of faces (default: photo crops)")
    ap.add_argument("--faces", type=int, default=0, help="0: every face (PublicTest of --data)")
    ap.add_argument("--codec", action="append", default=[], help="artifact dirs (default: release)")
    ap.add_argument("--models", type=Path, default=Path("models"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    import torch

    from benchmarks.common import finish, load_faces
    from core.artifacts import load_codec, read_manifest
    from core.edge_codec import EdgeCodec
    from core.release import listed_refs

    faces, source = load_faces(a.faces or 10**6, a.data)
    x = faces.numpy()
    dirs = [Path(c) for c in a.codec] or [
        a.models / ref
        for ref in listed_refs(a.models)
        if read_manifest(a.models / ref).kind == "codec"
    ]
    rows, failed = [], 0
    for art in dirs:
        server, m = load_codec(art)
        edge = EdgeCodec.load(art)
        t = edge.tables
        mismatched = sym_diff = 0
        edge_bytes = torch_bytes = 0
        margin = np.inf
        for i in range(0, len(x), a.batch):
            batch = x[i : i + a.batch]
            payloads, lat = edge.encode_latents(batch)
            containers = [server.parse(p) for p in payloads]
            y_hat = server.decode_latents(containers).numpy()
            meant = lat.y_hat.astype(np.float32)
            mismatched += int((y_hat != meant).reshape(len(batch), -1).any(axis=1).sum())
            ref = server.encode(torch.from_numpy(batch))
            edge_bytes += sum(map(len, payloads))
            torch_bytes += sum(map(len, ref))
            ref_y = np.stack([_y_symbols(server, r) for r in ref])
            sym_diff += int((ref_y != lat.y_symbols).reshape(len(batch), -1).any(axis=1).sum())
            y_shape, _ = latent_shapes(containers[0].header.padded_size)
            z_hat = lat.z_symbols.astype(np.float32) + t.z_medians[None, :, None, None]
            margin = min(margin, t.decision_margin(z_hat, y_shape))
        n = len(x)
        failed += mismatched
        rows.append(
            {
                "codec": m.ref,
                "faces": n,
                "mismatched": mismatched,
                "edge B": round(edge_bytes / n, 2),
                "torch B": round(torch_bytes / n, 2),
                "ratio": round(edge_bytes / torch_bytes, 4),
                "symbols differ": sym_diff,
                "margin": f"{margin:.1e}",
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"faces: {source}\n")
    columns = [(k, k) for k in rows[0]] if rows else []
    finish("edge_exactness", argv, columns, rows, a.json)
    return 1 if failed else 0


def _y_symbols(codec: FaceCodec, payload: bytes) -> NDArray[np.int32]:
    """The y symbols a v2 container carries (read back with the indexes its z decides)."""
    c = codec.parse(payload)
    y_shape, z_shape = latent_shapes(c.header.padded_size)
    _, z_count = codec.symbol_counts(c.header.padded_size)
    t = codec.tables
    face = codec._coder.start(c.strings[0], z_count)
    z_hat = face.z_symbols.reshape(1, t.N, *z_shape).astype(np.float32)
    idx, _ = t.gaussian_params(z_hat + t.z_medians[None, :, None, None], y_shape)
    return codec._coder.finish(face, idx[0])


if __name__ == "__main__":
    sys.exit(main())
