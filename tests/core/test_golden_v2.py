"""Golden format-v2 vectors: committed v2 bitstreams must keep decoding (and encoding) bit-exactly.

``face_48x48_v2.frc`` is the golden face of ``test_golden_codec.py`` encoded by the golden codec in
format v2 (constriction ANS, core/ans_coding.py); it decodes to the same latents as the v1
vectors. ``face_48x48_v2_release.frc`` is the same face through the default release codec, so a
drift in a shipped codec's tables or hyper path fails here too. The JSON holds the sha256 of the
decoded latents and of every v2 vector.

Regenerate only on a deliberate format change:
FERCOMP_REGEN_GOLDEN_V2=1 pytest tests/core/test_golden_v2.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from core import bitstream
from core.artifacts import load_codec
from core.face_codec import FaceCodec
from core.preprocess import face_to_tensor
from tests.core.test_golden_codec import CODEC_DIR, GOLDEN, _face

RELEASE_CODEC = Path(__file__).resolve().parents[2] / "models/face-hyperprior-fer-l0.025/2"
CASES = {"face_48x48_v2": CODEC_DIR, "face_48x48_v2_release": RELEASE_CODEC}
META = GOLDEN / "face_48x48_v2.json"


def _encode(codec: FaceCodec) -> bytes:
    (payload,) = codec.encode(face_to_tensor(_face()).unsqueeze(0))
    return payload


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _regenerate() -> None:
    meta = {}
    for name, art in CASES.items():
        codec, _ = load_codec(art)
        payload = _encode(codec)
        (GOLDEN / f"{name}.frc").write_bytes(payload)
        y_hat = codec.decode_latents([codec.parse(payload)])
        meta[name] = {
            "codec": art.name if art == CODEC_DIR else f"{art.parent.name}/{art.name}",
            "bytes": len(payload),
            "sha256": _sha(payload),
            "y_hat_sha256": _sha(y_hat.numpy().tobytes()),
        }
    META.write_text(json.dumps(meta, indent=2) + "\n")


if os.environ.get("FERCOMP_REGEN_GOLDEN_V2"):
    _regenerate()


@pytest.mark.parametrize("name", sorted(CASES))
def test_v2_golden_decodes_to_the_recorded_latents(name: str) -> None:
    codec, _ = load_codec(CASES[name])
    payload = (GOLDEN / f"{name}.frc").read_bytes()
    meta = json.loads(META.read_text())[name]
    assert _sha(payload) == meta["sha256"] and len(payload) == meta["bytes"]
    c = codec.parse(payload)
    assert c.header.version == bitstream.FORMAT_V2 and len(c.strings) == 1
    y_hat = codec.decode_latents([c])
    assert _sha(y_hat.numpy().tobytes()) == meta["y_hat_sha256"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_encoder_still_produces_the_v2_golden(name: str) -> None:
    codec, _ = load_codec(CASES[name])
    if _encode(codec) != (GOLDEN / f"{name}.frc").read_bytes():
        pytest.fail(f"v2 encoder output drifted from {name}.frc (format, tables or model change)")


def test_v2_and_v1_goldens_decode_to_the_same_latents() -> None:
    codec, _ = load_codec(CODEC_DIR)
    v1 = json.loads((GOLDEN / "face_48x48.json").read_text())
    y_hat = codec.decode_latents([codec.parse((GOLDEN / "face_48x48_v2.frc").read_bytes())])
    assert _sha(y_hat.numpy().tobytes()) == v1["y_hat_sha256"]
