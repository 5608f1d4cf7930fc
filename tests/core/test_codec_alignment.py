"""Latent alignment (issue 11): align_log2 = 4 pads a 48x48 face to nothing, y is 3x3.

The same weights at the default alignment (6) pad to 64x64 and code a 4x4 y; these tests check
that forward, encode/decode, symbol counts, the entropy guard and the artifact all agree on the
latent geometry, and that a stream padded for the other alignment is refused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from core import bitstream
from core.artifacts import ArtifactError, load_codec, load_codec_model, save_codec
from core.codec import (
    ALIGN_LOG2,
    LATENT_ALIGN_LOG2,
    CodecConfig,
    FaceHyperprior,
    latent_shapes,
)
from core.entropy_guard import MAX_BYTES_PER_SYMBOL
from core.face_codec import FaceCodec

TINY = CodecConfig(N=16, M=24)


def faces(n: int, h: int = 48, w: int = 48, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, max(1, h // 4), max(1, w // 4), generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def _model(align_log2: int) -> FaceHyperprior:
    torch.manual_seed(0)  # the same weights at every alignment
    m = FaceHyperprior(dataclasses.replace(TINY, align_log2=align_log2)).eval()
    with torch.no_grad():  # random weights give y ~ 0 (all strings minimal): spread it
        m.g_a[-1].weight.mul_(30.0)
    m.update(force=True)
    return m


@pytest.fixture(scope="module")
def latent() -> FaceCodec:
    return FaceCodec(_model(LATENT_ALIGN_LOG2), b"\x00\x00\x00\x04")


@pytest.fixture(scope="module")
def pixel() -> FaceCodec:
    return FaceCodec(_model(ALIGN_LOG2), b"\x00\x00\x00\x06")


def test_latent_shapes_round_z_up() -> None:
    assert latent_shapes((48, 48)) == ((3, 3), (1, 1))
    assert latent_shapes((48, 64)) == ((3, 4), (1, 1))
    assert latent_shapes((80, 96)) == ((5, 6), (2, 2))
    assert latent_shapes((64, 64)) == ((4, 4), (1, 1))  # the default alignment, unchanged


def test_alignment_outside_the_latent_grid_is_refused() -> None:
    with pytest.raises(ValueError, match=r"align_log2 must be in 4\.\.8"):
        CodecConfig(align_log2=3)


@pytest.mark.parametrize("size", [(48, 48), (45, 50), (16, 16), (1, 1), (70, 33)])
def test_round_trip_in_latent_alignment(latent: FaceCodec, size: tuple[int, int]) -> None:
    (p,) = latent.encode(faces(1, *size))
    h = bitstream.parse(p).header
    assert h.align_log2 == LATENT_ALIGN_LOG2
    assert all(s % 16 == 0 and 0 <= s - d < 16 for s, d in zip(h.padded_size, size, strict=True))
    (img,) = latent.decode([p])
    assert tuple(img.shape) == (1, *size)
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0


def test_y_is_three_by_three_for_a_48x48_face(latent: FaceCodec) -> None:
    payloads = latent.encode(faces(2))
    assert bitstream.parse(payloads[0]).header.padding == (0, 0)
    y_hat = latent.decode_latents([latent.parse(p) for p in payloads])
    assert tuple(y_hat.shape) == (2, TINY.M, 3, 3)
    assert latent.symbol_counts((48, 48)) == (TINY.M * 9, TINY.N * 1)


def test_forward_agrees_with_the_coder_on_geometry(latent: FaceCodec) -> None:
    out = latent.model(faces(2, 45, 50))
    assert tuple(out["x_hat"].shape) == (2, 1, 45, 50)
    y_cells, z_cells = latent.symbol_counts((48, 64))
    assert out["likelihoods"]["y"][0].numel() == y_cells
    assert out["likelihoods"]["z"][0].numel() == z_cells


def test_same_weights_code_fewer_bytes_in_latent_alignment(
    latent: FaceCodec, pixel: FaceCodec
) -> None:
    x = faces(8, seed=3)
    small = sum(len(p) for p in latent.encode(x))
    large = sum(len(p) for p in pixel.encode(x))
    assert small < large
    # and the training-time rate estimate says the same
    with torch.no_grad():
        bits = [
            sum(float(-torch.log2(v).sum()) for v in c.model(x)["likelihoods"].values())
            for c in (latent, pixel)
        ]
    assert bits[0] < bits[1]


def test_header_with_the_other_alignment_is_refused(latent: FaceCodec, pixel: FaceCodec) -> None:
    (p,) = latent.encode(faces(1))
    c = bitstream.parse(p)
    forged = bitstream.pack(
        bitstream.Container(dataclasses.replace(c.header, align_log2=ALIGN_LOG2), c.strings)
    )
    with pytest.raises(bitstream.DimensionsOutOfRange, match=r"align_log2 4\b.*header says align"):
        latent.decode([forged])
    (q,) = pixel.encode(faces(1))
    c6 = bitstream.parse(q)
    forged6 = bitstream.pack(
        bitstream.Container(dataclasses.replace(c6.header, codec_id=latent.codec_id), c6.strings)
    )
    with pytest.raises(bitstream.DimensionsOutOfRange, match="header says align_log2 6"):
        latent.decode([forged6])


def test_entropy_guard_uses_the_latent_symbol_counts(latent: FaceCodec) -> None:
    (p,) = latent.encode(faces(1), merged=False)
    c = latent.parse(p)
    y_symbols, _ = latent.symbol_counts(c.header.padded_size)
    long_y = bytes(MAX_BYTES_PER_SYMBOL * y_symbols + 9)
    hostile = bitstream.pack(bitstream.Container(c.header, (long_y, c.strings[1])))
    with pytest.raises(bitstream.MalformedBitstream, match=f"for {y_symbols} symbols"):
        latent.parse(hostile)
    # The merged layout is bounded by y's and z's symbols together.
    total = sum(latent.symbol_counts(c.header.padded_size))
    long_merged = bytes(MAX_BYTES_PER_SYMBOL * total + 9)
    hostile = bitstream.pack(bitstream.Container(c.header, (long_merged,)))
    with pytest.raises(bitstream.MalformedBitstream, match=f"for {total} symbols"):
        latent.parse(hostile)


def test_compressai_api_round_trips_with_the_crop(latent: FaceCodec) -> None:
    m = latent.model
    with torch.no_grad():
        enc = m.compress(faces(1, 45, 50))
        assert tuple(enc["y_shape"]) == (3, 4) and tuple(enc["shape"]) == (1, 1)
        out = m.decompress(enc["strings"], enc["shape"], enc["y_shape"])
    assert tuple(out["x_hat"].shape) == (1, 1, 48, 64)


def test_artifact_records_alignment_and_gets_its_own_codec_id(tmp_path: Path) -> None:
    m4 = save_codec(_model(LATENT_ALIGN_LOG2), tmp_path / "a4", "c", "2")
    m6 = save_codec(_model(ALIGN_LOG2), tmp_path / "a6", "c", "1")
    assert m4.architecture["align_log2"] == LATENT_ALIGN_LOG2
    assert "align_log2" not in m6.architecture  # manifests at the default stay as they were
    assert m4.codec_id != m6.codec_id  # a server keys decoders by id
    codec, _ = load_codec(tmp_path / "a4")
    assert codec.align_log2 == LATENT_ALIGN_LOG2
    assert load_codec_model(tmp_path / "a6")[0].config.align_log2 == ALIGN_LOG2


def test_manifest_alignment_edited_after_export_is_refused(tmp_path: Path) -> None:
    save_codec(_model(ALIGN_LOG2), tmp_path / "c", "c", "1")
    mf = tmp_path / "c" / "manifest.json"
    data = json.loads(mf.read_text())
    data["architecture"]["align_log2"] = LATENT_ALIGN_LOG2
    mf.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="exported for align_log2 6"):
        load_codec(tmp_path / "c")
