"""Classifier inputs sent through a classical codec: the "WebP-adapted classifier" stage.

The jointly trained codec's classifier has seen decoded faces; comparing it only with WebP read
by a classifier trained on clean faces flatters it. The fair competitor fine-tunes a classifier
on WebP-decoded faces (``input_codec = "webp"``): every training face is encoded and decoded by
Pillow at a quality drawn per face from ``webp_quality_range`` (after augmentation, so the
classifier sees exactly what a receiver would decode). Validation uses fixed qualities spread
over the same range, so the selected epoch does not depend on the draw.

The round trip reuses ``training.baselines`` (same encoder settings as the eval's WebP curve).

``input_codec = "learned"`` adapts a classifier to one learned codec held fixed
(``input_codec_model``): every face goes through that codec's real bitstream round trip
(``core.face_codec.FaceCodec`` encode + decode, what the server decodes), so the codec's bytes
do not change and only the reader improves: accuracy at a fixed rate.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from core.artifacts import load_codec
from training import baselines as bl
from training.config import resolve_input

INPUT_CODECS = ("none", "webp", "learned")


class CodecChannel:
    """uint8 faces through ``codec`` and back, at a quality per face in ``[lo, hi]``."""

    def __init__(self, codec: str, quality_range: tuple[int, int] | list[int]) -> None:
        lo, hi = (int(q) for q in quality_range)
        if codec not in bl.SETTINGS:
            raise ValueError(f"unknown input codec {codec!r}")
        if not bl.format_available(codec):
            raise ValueError(f"{codec} is not available in this Pillow build")
        if not 1 <= lo <= hi <= 100:
            raise ValueError(f"quality range must satisfy 1 <= lo <= hi <= 100, got {lo}, {hi}")
        self.codec, self.lo, self.hi = codec, lo, hi

    def _roundtrip(self, x: Tensor, qualities: list[int]) -> Tensor:
        # What a sender holds: 8-bit pixels. x: [B, 1, H, W] in [0, 1].
        faces = (x.detach()[:, 0].float() * 255.0).round().clamp(0, 255).to(torch.uint8)
        decoded, _ = bl.roundtrip_each(faces.cpu().numpy(), self.codec, qualities)
        out = torch.from_numpy(decoded).unsqueeze(1).to(x.device, torch.float32) / 255.0
        return out.to(x.dtype)

    def train_batch(self, x: Tensor) -> Tensor:
        """A quality drawn per face from the torch RNG (seeded and checkpointed by the loop)."""
        q = torch.randint(self.lo, self.hi + 1, (len(x),)).tolist()
        return self._roundtrip(x, q)

    def eval_batch(self, x: Tensor) -> Tensor:
        """Qualities evenly spread over the range, the same for every epoch."""
        q = np.linspace(self.lo, self.hi, num=len(x)).round().astype(int).tolist()
        return self._roundtrip(x, q)


class LearnedCodecChannel:
    """uint8 faces through a learned codec's bitstream and back (deterministic: the same
    bytes a client sends and the same image the server decodes, float in [0, 1])."""

    def __init__(self, art_dir: str) -> None:
        self.codec, self.manifest = load_codec(art_dir)

    def _roundtrip(self, x: Tensor) -> Tensor:
        # What a sender holds: 8-bit pixels. x: [B, 1, H, W] in [0, 1].
        faces = (x.detach().float() * 255.0).round().clamp(0, 255) / 255.0
        with torch.no_grad():
            decoded = torch.stack(self.codec.decode(self.codec.encode(faces.cpu())))
        return decoded.to(x.device, x.dtype)

    def train_batch(self, x: Tensor) -> Tensor:
        return self._roundtrip(x)

    def eval_batch(self, x: Tensor) -> Tensor:
        return self._roundtrip(x)


def make_channel(cfg: dict[str, object]) -> CodecChannel | LearnedCodecChannel | None:
    """The classifier config's input channel (None for ``input_codec = "none"``)."""
    name = str(cfg.get("input_codec", "none"))
    if name == "none":
        return None
    if name == "learned":  # a relative path is looked up as the other artifact keys are
        return LearnedCodecChannel(str(resolve_input(str(cfg["input_codec_model"]))))
    rng = cfg.get("webp_quality_range", [5, 60])
    assert isinstance(rng, list | tuple)
    return CodecChannel(name, (int(rng[0]), int(rng[1])))
