"""Bitstream v2's entropy coder and tables (core/ans_coding.py, core/latent_tables.py)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core import bitstream
from core.ans_coding import MAX_SYMBOL, LatentCoder
from core.artifacts import load_codec
from core.face_codec import FaceCodec
from core.latent_tables import LatentTables
from tests.core.test_golden_codec import CODEC_DIR

RELEASE_CODEC = Path(__file__).resolve().parents[2] / "models/face-hyperprior-fer-l0.025/2"


@pytest.fixture(scope="module")
def codec() -> FaceCodec:
    return load_codec(RELEASE_CODEC if RELEASE_CODEC.is_dir() else CODEC_DIR)[0]


def _random_face_symbols(
    codec: FaceCodec, rng: np.random.Generator, spread: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = codec.tables
    z = rng.integers(-spread, spread + 1, size=(t.N, 1, 1)).astype(np.int32)
    z_hat = z[None].astype(np.float32) + t.z_medians[None, :, None, None]
    idx, _ = t.gaussian_params(z_hat, (3, 3))
    y = rng.integers(-spread, spread + 1, size=(t.M, 3, 3)).astype(np.int32)
    return z, y, idx[0]


@pytest.mark.parametrize("spread", [2, 60, MAX_SYMBOL])
def test_symbols_round_trip_including_escapes(codec: FaceCodec, spread: int) -> None:
    """Values far outside every table (escapes, raw values) come back exactly."""
    coder = LatentCoder(codec.tables)
    rng = np.random.default_rng(spread)
    z, y, idx = _random_face_symbols(codec, rng, spread)
    string = coder.encode(z, y, idx)
    face = coder.start(string, z.size)
    np.testing.assert_array_equal(face.z_symbols, z.reshape(-1))
    np.testing.assert_array_equal(coder.finish(face, idx), y)


def test_symbols_beyond_the_limit_are_clamped(codec: FaceCodec) -> None:
    coder = LatentCoder(codec.tables)
    z, y, idx = _random_face_symbols(codec, np.random.default_rng(0), 3)
    y[0, 0, 0], z[0, 0, 0] = 10**6, -(10**6)
    face = coder.start(coder.encode(z, y, idx), z.size)
    assert face.z_symbols[0] == -MAX_SYMBOL
    assert coder.finish(face, idx)[0, 0, 0] == MAX_SYMBOL


def test_non_canonical_or_overlong_strings_are_refused(codec: FaceCodec) -> None:
    coder = LatentCoder(codec.tables)
    z, y, idx = _random_face_symbols(codec, np.random.default_rng(1), 3)
    string = coder.encode(z, y, idx)
    assert not string.endswith(b"\0")
    with pytest.raises(bitstream.MalformedBitstream, match="zero byte"):
        coder.start(string + b"\0", z.size)
    # Whole extra words the symbols do not account for: data left after the last symbol.
    with pytest.raises(bitstream.MalformedBitstream):
        face = coder.start(string + bytes(-len(string) % 4) + b"\x07\x00\x00\x01", z.size)
        coder.finish(face, idx)


def test_hostile_strings_raise_only_bitstream_errors(codec: FaceCodec) -> None:
    """Random bytes in a v2 string (the fuzzer's long run is `make fuzz`): either a face or a
    BitstreamError, in this process, with no padding and no isolation."""
    rnd = random.Random(5)
    (payload,) = codec.encode(torch.rand(1, 1, 48, 48, generator=torch.Generator()))
    c = codec.parse(payload)
    decoded = refused = 0
    for _ in range(300):
        s = rnd.randbytes(rnd.randrange(0, 300))
        payload = bitstream.pack(bitstream.Container(c.header, (s,)))
        try:
            y_hat = codec.decode_latents([codec.parse(payload)])
        except bitstream.BitstreamError:
            refused += 1
            continue
        assert torch.isfinite(y_hat).all()
        decoded += 1
    assert decoded + refused == 300 and refused > 0


def test_v2_container_holds_exactly_one_string(codec: FaceCodec) -> None:
    (payload,) = codec.encode(torch.rand(1, 1, 48, 48))
    c = codec.parse(payload)
    two = bitstream.Container(c.header, (c.strings[0], b"x"))
    with pytest.raises(bitstream.MalformedBitstream, match="exactly 1 string"):
        bitstream.pack(two)
    v1 = bitstream.pack(bitstream.Container(replace(c.header, version=1), two.strings))
    forged = bytearray(v1)
    forged[2] = 2  # the same two strings claimed as v2
    with pytest.raises(bitstream.BitstreamError):
        bitstream.parse(bytes(forged))


def test_tables_file_round_trips(codec: FaceCodec, tmp_path: Path) -> None:
    path = tmp_path / "entropy.safetensors"
    codec.tables.save(path)
    back = LatentTables.load(path)
    z = np.random.default_rng(2).normal(size=(4, back.N, 1, 1)).astype(np.float32)
    ours, theirs = codec.tables.gaussian_params(z, (3, 3)), back.gaussian_params(z, (3, 3))
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_numpy_hyper_path_decides_like_the_float64_torch_one(codec: FaceCodec) -> None:
    """v1's torch float64 hyper path and v2's numpy one give the same indexes and means (they
    are separate implementations; they may only differ within float64 round-off)."""
    g = torch.Generator().manual_seed(3)
    z_hat = torch.round(torch.randn(64, codec.tables.N, 1, 1, generator=g) * 3).float()
    idx_t, mu_t = codec._gaussian_params(z_hat, (3, 3))
    idx_n, mu_n = codec.tables.gaussian_params(z_hat.numpy(), (3, 3))
    np.testing.assert_array_equal(idx_t.numpy(), idx_n)
    np.testing.assert_array_equal(mu_t.numpy(), mu_n)


def test_decision_margin_is_the_distance_to_the_nearest_boundary(codec: FaceCodec) -> None:
    z = np.round(np.random.default_rng(4).normal(size=(8, codec.tables.N, 1, 1)) * 3)
    z_hat = z.astype(np.float32) + codec.tables.z_medians[None, :, None, None]
    margin = codec.tables.decision_margin(z_hat, (3, 3))
    assert 0.0 < margin < 1.0
    # Moving every value by a hair less than the margin cannot flip a decision.
    scales, _ = codec.tables.hyper_synthesis(z_hat, (3, 3))
    idx = np.searchsorted(codec.tables.scale_table[:-1], scales * (1 + margin / 2))
    np.testing.assert_array_equal(idx, codec.tables.gaussian_params(z_hat, (3, 3))[0])
