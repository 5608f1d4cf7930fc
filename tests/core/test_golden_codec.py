"""Golden codec vectors: committed bitstreams must keep decoding bit-exactly.

``face_48x48.frc`` is CompressAI's two-string layout (every release before the merged layout),
``face_48x48_merged.frc`` the same face in the one-string layout (core/latent_coding.py); both
decode to the same latents.

If the entropy coder, the hyper path or the container drift, this fails. Regenerate only on a
deliberate format change: FERCOMP_REGEN_GOLDEN=1 pytest tests/core/test_golden_codec.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.artifacts import load_codec, save_codec
from core.codec import CodecConfig, FaceHyperprior
from core.preprocess import face_to_tensor, tensor_to_uint8

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CODEC_DIR = GOLDEN / "codec-v1"


def _face() -> np.ndarray:
    yy, xx = np.mgrid[0:48, 0:48]
    img = (
        128 + 60 * np.sin(xx / 6.0) * np.cos(yy / 9.0) - 40 * ((xx - 24) ** 2 + (yy - 20) ** 2 < 60)
    )
    return np.clip(img, 0, 255).astype(np.uint8)


def _regenerate() -> None:
    torch.manual_seed(1234)
    save_codec(FaceHyperprior(CodecConfig(N=16, M=24)), CODEC_DIR, "golden-codec", "1")
    codec, _ = load_codec(CODEC_DIR)
    (payload,) = codec.encode(face_to_tensor(_face()).unsqueeze(0), merged=False)
    (GOLDEN / "face_48x48.frc").write_bytes(payload)
    (merged,) = codec.encode(face_to_tensor(_face()).unsqueeze(0), version=1)
    (GOLDEN / "face_48x48_merged.frc").write_bytes(merged)
    y_hat = codec.decode_latents([codec.parse(payload)])
    (img,) = codec.decode([payload])
    Image.fromarray(tensor_to_uint8(img)).save(GOLDEN / "face_48x48.decoded.png")
    meta = {
        "y_hat_sha256": hashlib.sha256(y_hat.numpy().tobytes()).hexdigest(),
        "bytes": len(payload),
        "bytes_merged": len(merged),
    }
    (GOLDEN / "face_48x48.json").write_text(json.dumps(meta, indent=2) + "\n")


if os.environ.get("FERCOMP_REGEN_GOLDEN"):
    _regenerate()


def test_golden_bitstream_decodes_bit_exactly() -> None:
    codec, _ = load_codec(CODEC_DIR)
    payload = (GOLDEN / "face_48x48.frc").read_bytes()
    meta = json.loads((GOLDEN / "face_48x48.json").read_text())
    y_hat = codec.decode_latents([codec.parse(payload)])
    assert hashlib.sha256(y_hat.numpy().tobytes()).hexdigest() == meta["y_hat_sha256"]
    (img,) = codec.decode([payload])
    expected = np.asarray(Image.open(GOLDEN / "face_48x48.decoded.png"), dtype=np.int16)
    # the synthesis transform is float: allow one grey level of rounding difference
    assert np.abs(tensor_to_uint8(img).astype(np.int16) - expected).max() <= 1


def test_encoder_still_produces_the_golden_bitstream() -> None:
    codec, _ = load_codec(CODEC_DIR)
    (payload,) = codec.encode(face_to_tensor(_face()).unsqueeze(0), merged=False)
    if payload != (GOLDEN / "face_48x48.frc").read_bytes():
        pytest.fail("encoder output drifted from the golden bitstream (format or model change)")


def test_encoder_still_produces_the_golden_merged_bitstream() -> None:
    codec, _ = load_codec(CODEC_DIR)
    (payload,) = codec.encode(face_to_tensor(_face()).unsqueeze(0), version=1)
    if payload != (GOLDEN / "face_48x48_merged.frc").read_bytes():
        pytest.fail("merged encoder output drifted from its golden bitstream")


def test_merged_golden_decodes_to_the_same_latents_and_is_smaller() -> None:
    codec, _ = load_codec(CODEC_DIR)
    merged = (GOLDEN / "face_48x48_merged.frc").read_bytes()
    split = (GOLDEN / "face_48x48.frc").read_bytes()
    meta = json.loads((GOLDEN / "face_48x48.json").read_text())
    c = codec.parse(merged)
    assert len(c.strings) == 1 and len(codec.parse(split).strings) == 2
    y_hat = codec.decode_latents([c])
    assert hashlib.sha256(y_hat.numpy().tobytes()).hexdigest() == meta["y_hat_sha256"]
    assert len(merged) == meta["bytes_merged"] < len(split) == meta["bytes"]
