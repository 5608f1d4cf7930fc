"""Codec round trip and the cross-thread / cross-batch determinism of entropy decoding."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from core import bitstream
from core.artifacts import load_codec
from core.codec import CodecConfig, FaceHyperprior, pad_to_alignment


@pytest.fixture(scope="module")
def codec(model_repo: Path):
    c, _ = load_codec(model_repo / "tiny-codec" / "1")
    return c


def faces(n: int, h: int = 48, w: int = 48, c: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Smooth-ish images (low-pass noise) look more like faces to a codec than white noise.
    x = torch.rand(n, c, max(1, h // 4), max(1, w // 4), generator=g)
    return torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)


def test_round_trip_shape_range_bytes(codec) -> None:
    x = faces(3)
    payloads = codec.encode(x)
    assert len(payloads) == 3 and all(len(p) > 16 for p in payloads)
    out = codec.decode(payloads)
    assert [tuple(t.shape) for t in out] == [(1, 48, 48)] * 3
    assert all(float(t.min()) >= 0.0 and float(t.max()) <= 1.0 for t in out)
    h = bitstream.parse(payloads[0]).header
    assert (h.height, h.width, h.channels, h.codec_id) == (48, 48, 1, codec.codec_id)
    assert h.padding == (16, 16)


@pytest.mark.parametrize("size", [(48, 48), (37, 81), (64, 64), (1, 1)])
def test_any_size_is_padded_and_cropped(codec, size: tuple[int, int]) -> None:
    (p,) = codec.encode(faces(1, *size))
    (img,) = codec.decode([p])
    assert tuple(img.shape) == (1, *size)


def test_mixed_sizes_decode_in_order(codec) -> None:
    a, b = codec.encode(faces(1, 48, 48))[0], codec.encode(faces(1, 30, 70))[0]
    out = codec.decode([b, a, b])
    assert [tuple(t.shape) for t in out] == [(1, 30, 70), (1, 48, 48), (1, 30, 70)]
    assert torch.equal(out[0], out[2])


def test_rgb_codec_round_trip() -> None:
    torch.manual_seed(0)
    m = FaceHyperprior(CodecConfig(N=16, M=24, in_channels=3))
    m.update(force=True)
    from core.face_codec import FaceCodec

    c = FaceCodec(m, b"\x00\x01\x02\x03")
    (img,) = c.decode(c.encode(faces(1, 40, 40, c=3)))
    assert tuple(img.shape) == (3, 40, 40)


def test_wrong_channels_refused(codec) -> None:
    with pytest.raises(ValueError, match="expected"):
        codec.encode(faces(1, c=3))


def test_other_codec_refused_with_unknown_codec(model_repo: Path, codec) -> None:
    other, _ = load_codec(model_repo / "tiny-codec" / "2")
    (p,) = other.encode(faces(1))
    with pytest.raises(bitstream.UnknownCodec):
        codec.decode([p])


def test_replicate_padding_keeps_content() -> None:
    x = faces(1, 48, 48)
    p = pad_to_alignment(x)
    assert p.shape[-2:] == (64, 64) and torch.equal(p[..., :48, :48], x)
    assert torch.equal(p[..., 60, :48], x[..., 47, :])


def test_forward_contract() -> None:
    m = FaceHyperprior(CodecConfig(N=16, M=24))
    out = m(faces(2))
    assert out["x_hat"].shape == (2, 1, 48, 48)
    assert set(out["likelihoods"]) == {"y", "z"}


# -- determinism ---------------------------------------------------------------------------
_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(int(sys.argv[2]))
    from core.artifacts import load_codec
    from core import bitstream
    codec, _ = load_codec(sys.argv[1])
    mode, path = sys.argv[3], sys.argv[4]
    if mode == "encode":
        g = torch.Generator().manual_seed(7)
        x = torch.nn.functional.interpolate(torch.rand(4, 1, 12, 12, generator=g), size=(48, 48),
                                            mode="bilinear", align_corners=False)
        payloads = codec.encode(x)
        torch.save(payloads, path)
    else:
        payloads = torch.load(path)
        # decode face 2 alone, and again inside a batch with other images
        alone = codec.decode_latents([codec.parse(payloads[2])])
        batch = codec.decode_latents([codec.parse(p) for p in payloads])
        x_alone = codec.synthesize(alone, 48, 48)
        x_batch = codec.synthesize(batch, 48, 48)
        torch.save({"alone": alone, "batch": batch, "x_alone": x_alone, "x_batch": x_batch},
                   path + ".out")
    """
)


def _run(model_dir: Path, threads: int, mode: str, path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(model_dir), str(threads), mode, str(path)],
        check=True,
        cwd=root,
    )


def test_decoding_is_bit_identical_across_threads_and_batches(model_repo: Path, tmp_path: Path):
    art = model_repo / "tiny-codec" / "1"
    payloads = tmp_path / "p.pt"
    _run(art, 1, "encode", payloads)
    _run(art, 2, "decode", payloads)
    out = torch.load(str(payloads) + ".out")
    # the quantised latents are bit-identical, alone or in a batch, 1 or 2 threads
    assert torch.equal(out["alone"][0], out["batch"][2])
    codec, _ = load_codec(art)
    enc = torch.load(payloads)
    ref = codec.decode_latents([codec.parse(enc[2])])
    assert torch.equal(ref[0], out["alone"][0])
    # x_hat may differ only by float rounding in the synthesis transform
    assert torch.allclose(out["x_alone"][0], out["x_batch"][2], atol=1e-5)
