"""Classical image codecs (JPEG, WebP, AVIF via Pillow) as rate/accuracy baselines.

Each face is written exactly as a sender would ship it: a complete image file, headers
included, so ``len(file)`` compares fairly with a learned codec's whole container. At 48x48 those
headers are a large share of the file (JPEG ~150 B of tables, AVIF ~300 B of ISOBMFF boxes), which
is part of why small learned bitstreams win at low rates.

Encoder settings are each format's "best compression" knobs at reasonable speed, so the
baselines are not handicapped: JPEG with optimised Huffman tables (grayscale, one component),
WebP with ``method=6``, AVIF at ``speed=6``. Pillow releases the GIL while encoding, so a thread
pool gives a near-linear speed-up over cores.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image, features

#: Pillow format name and save options per baseline.
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "jpeg": ("JPEG", {"optimize": True}),
    "webp": ("WEBP", {"method": 6}),
    "avif": ("AVIF", {"speed": 6}),
}
BASELINES = tuple(SETTINGS)


def avif_available() -> bool:
    """Pillow >= 11.2 may have AVIF built in; older ones need the ``pillow_avif`` plugin."""
    try:
        if features.check("avif"):
            return True
    except (ValueError, KeyError):  # Pillow versions that do not know the feature name
        pass
    try:
        import pillow_avif  # noqa: F401  (registers the AVIF plugin on import)
    except ImportError:
        return False
    return "AVIF" in Image.SAVE


def format_available(name: str) -> bool:
    if name == "avif":
        return avif_available()
    if name == "webp":
        return bool(features.check("webp"))
    return True


def resolve_baselines(spec: str | list[str] | None) -> list[str]:
    """``"jpeg,webp,avif"`` -> the usable ones; unknown names are errors, missing ones warn."""
    if spec is None:
        return []
    names = spec if isinstance(spec, list) else [s for s in spec.split(",") if s.strip()]
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if name in ("", "none"):
            continue
        if name not in SETTINGS:
            raise ValueError(f"unknown baseline {raw!r} (choose from {', '.join(BASELINES)})")
        if not format_available(name):
            warnings.warn(
                f"{name} is not available in this Pillow build (install pillow-avif-plugin); "
                "skipping it",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        if name not in out:
            out.append(name)
    return out


def encode_one(face: np.ndarray, name: str, quality: int) -> bytes:
    """One uint8 face [H, W] -> the complete image file Pillow writes."""
    fmt, options = SETTINGS[name]
    buf = io.BytesIO()
    Image.fromarray(face).save(buf, format=fmt, quality=int(quality), **options)
    return buf.getvalue()


def decode_one(data: bytes) -> np.ndarray:
    """Image file -> uint8 [H, W] (WebP decodes to RGB even for gray input: convert back)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L"), dtype=np.uint8)


def _roundtrip_one(face: np.ndarray, name: str, quality: int) -> tuple[np.ndarray, int]:
    data = encode_one(face, name, quality)
    return decode_one(data), len(data)


def roundtrip(
    faces: np.ndarray, name: str, quality: int, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode uint8 faces [N, H, W] -> (decoded uint8 [N, H, W], file sizes [N])."""
    return roundtrip_each(faces, name, [int(quality)] * len(faces), workers)


def roundtrip_each(
    faces: np.ndarray, name: str, qualities: Sequence[int], workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``roundtrip`` with one quality per face (training through a codec samples them)."""
    if len(qualities) != len(faces):
        raise ValueError(f"{len(qualities)} qualities for {len(faces)} faces")
    if any(not 1 <= int(q) <= 100 for q in qualities):
        raise ValueError(f"quality must be in 1..100, got {sorted(set(qualities))}")
    if name not in SETTINGS:
        raise ValueError(f"unknown baseline {name!r}")
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pairs = zip(faces, qualities, strict=True)
        results = list(pool.map(lambda fq: _roundtrip_one(fq[0], name, int(fq[1])), pairs))
    decoded = np.stack([r[0] for r in results]) if results else np.zeros_like(faces)
    sizes = np.array([r[1] for r in results], dtype=np.int64)
    return decoded, sizes


def settings_summary(names: list[str]) -> dict[str, dict[str, Any]]:
    """Encoder settings recorded in the eval JSON so results can be reproduced."""
    return {n: {"format": SETTINGS[n][0], **SETTINGS[n][1]} for n in names}
