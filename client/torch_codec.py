"""The torch fallback of the edge client: a codec artifact without an ``edge/`` bundle.

Only ``client.edge_codec.load_encoder_codec`` and ``client.encoder`` reach this module, lazily,
when an artifact has no edge bundle (or a caller hands the client a torch ``FaceCodec``); the
edge install (``pip install 'fercomp[edge]'``) has no torch, and there such an artifact is a
clear error instead (import-linter: "the edge path never imports torch or compressai" names
these two imports as the only way in).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from core.artifacts import load_codec
from core.face_codec import FaceCodec
from core.manifest import Manifest


def load_torch_codec(art_dir: str | Path, device: str = "cpu") -> tuple[FaceCodec, Manifest]:
    """The artifact's torch ``FaceCodec`` (weights verified by ``core.artifacts``)."""
    return load_codec(art_dir, device)


def encode_with_torch(codec: Any, batch: NDArray[np.float32], merged: bool) -> list[bytes]:
    """``codec.encode`` (a ``FaceCodec``, or anything with its signature) on a numpy batch."""
    out: list[bytes] = codec.encode(torch.from_numpy(np.ascontiguousarray(batch)), merged=merged)
    return out
