"""Pack the FER2013 archive small enough to travel to a lent GPU machine, and unpack it there.

The .npz (71 MB) is over the device tool's 64 MiB transfer limit; a lossless WebP mosaic of the
faces is 52 MB. The packed copy lives in .data/ (git-ignored, never committed).

    python scripts/device_data.py pack ../shared/data/fer2013.npz .data
    python scripts/device_data.py unpack .data /tmp/fer2013.npz
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

COLS = 340  # mosaic width 340*48 = 16320 px, under WebP's 16383 limit
KEYS = ("labels", "split", "ferplus_label", "lossless")


def pack(npz: Path, out: Path) -> None:
    d = np.load(npz)
    im = d["images"]
    n = len(im)
    rows = -(-n // COLS)
    tiles = np.zeros((rows * COLS, 48, 48), np.uint8)
    tiles[:n] = im
    mosaic = tiles.reshape(rows, COLS, 48, 48).transpose(0, 2, 1, 3).reshape(rows * 48, COLS * 48)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mosaic).save(out / "faces.webp", lossless=True, quality=60, method=2)
    np.savez_compressed(out / "meta.npz", n=n, **{k: d[k] for k in KEYS})


def unpack(src: Path, npz: Path) -> None:
    meta = np.load(src / "meta.npz")
    n = int(meta["n"])
    mosaic = np.asarray(Image.open(src / "faces.webp").convert("L"))
    rows = mosaic.shape[0] // 48
    im = mosaic.reshape(rows, 48, COLS, 48).transpose(0, 2, 1, 3).reshape(-1, 48, 48)[:n]
    np.savez(npz, images=np.ascontiguousarray(im), **{k: meta[k] for k in KEYS})


if __name__ == "__main__":
    cmd, a, b = sys.argv[1:4]
    (pack if cmd == "pack" else unpack)(Path(a), Path(b))
