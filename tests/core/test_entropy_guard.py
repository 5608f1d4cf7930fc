"""The rANS decoder stays inside its input (core/entropy_guard.py, issue 9).

``tests/golden/decoder_crash/`` holds 34-byte containers (valid CRC, two 8-byte strings, a
declared 256x256 to 512x512) that made CompressAI's decoder read past its input and segfault
the server before the guard: 8 of the 12 crash an unguarded decode in a fresh process. They are
decoded here in a subprocess, so a regression fails this test instead of killing pytest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import bitstream
from core.artifacts import load_codec
from core.entropy_guard import (
    MAX_BYTES_PER_SYMBOL,
    PaddedStrings,
    check_string_lengths,
    max_words_read,
    pad_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "golden" / "decoder_crash"
GOLDEN_CODEC = ROOT / "tests" / "golden" / "codec-v1"
JOINT_CODEC = ROOT / "models" / "face-hyperprior-joint-l0.025" / "3"

_DECODE_ALL = """
import sys
from pathlib import Path
from core.artifacts import load_codec
from core.bitstream import BitstreamError
codecs = {"golden": load_codec(sys.argv[1])[0], "joint": load_codec(sys.argv[2])[0]}
for f in sorted(Path(sys.argv[3]).glob("*.frc")):
    try:
        (img,) = codecs[f.name.split("-")[0]].decode([f.read_bytes()])
        print(f.name, "decoded", tuple(img.shape), flush=True)
    except BitstreamError as e:
        print(f.name, "refused", e.code, flush=True)
"""


def _decode_all_in_subprocess(folder: Path) -> subprocess.CompletedProcess[str]:
    """Decode every ``*.frc`` in ``folder`` in a fresh process, so a crash fails the test
    instead of killing pytest; asserts the process exited normally."""
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_ALL, str(GOLDEN_CODEC), str(JOINT_CODEC), str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"decoder died with {done.returncode}: {done.stderr[-2000:]}"
    return done


def test_crash_corpus_decodes_without_crashing() -> None:
    files = sorted(CORPUS.glob("*.frc"))
    assert len(files) == 12
    if not JOINT_CODEC.is_dir():
        pytest.skip(f"{JOINT_CODEC} is not bundled")
    done = _decode_all_in_subprocess(CORPUS)
    # Each one is decoded to an image of its declared size or refused with a bitstream error
    # (hostile bypass codes decode to latents beyond MAX_LATENT): never a dead process.
    lines = done.stdout.split("\n")
    for f in files:
        side = int(f.name.split("-")[1].split("x")[0])
        assert (
            f"{f.name} decoded (1, {side}, {side})" in lines
            or f"{f.name} refused malformed" in lines
        )


def test_padding_leaves_valid_streams_unchanged() -> None:
    codec, _ = load_codec(GOLDEN_CODEC)
    g = torch.Generator().manual_seed(3)
    payloads = codec.encode(torch.rand(3, 1, 48, 48, generator=g), merged=False)
    containers = [codec.parse(p) for p in payloads]
    guarded = codec.decode_latents(containers)
    # The same decode with the strings exactly as sent (CompressAI's own path, no padding).
    z_hat = codec._eb.decompress([c.strings[1] for c in containers], (1, 1))
    idx, means = codec._gaussian_params(z_hat)
    raw = codec._gc.decompress(
        [c.strings[0] for c in containers], idx, dtype=torch.float64, means=means
    )
    assert torch.equal(guarded, raw.float())


def test_strings_longer_than_any_encoding_are_malformed() -> None:
    codec, _ = load_codec(GOLDEN_CODEC)
    (payload,) = codec.encode(torch.full((1, 1, 48, 48), 0.5), merged=False)
    c = codec.parse(payload)
    y_symbols, _ = codec.symbol_counts(c.header.padded_size)
    long_y = bytes(MAX_BYTES_PER_SYMBOL * y_symbols + 9)
    hostile = bitstream.pack(bitstream.Container(c.header, (long_y, c.strings[1])))
    with pytest.raises(bitstream.MalformedBitstream, match="at most"):
        codec.parse(hostile)


def test_check_string_lengths_accepts_the_limit_and_refuses_one_more() -> None:
    check_string_lengths([bytes(4 * 10 + 8)], 10, "y")
    with pytest.raises(bitstream.MalformedBitstream):
        check_string_lengths([bytes(4 * 10 + 9)], 10, "y")


def test_read_bound_grows_with_symbols_and_data() -> None:
    assert max_words_read(2, 8) > max_words_read(1, 8) > 0
    assert max_words_read(1, 800) > max_words_read(1, 8)
    assert pad_bytes(1536, 300) == 4 * max_words_read(1536, 300)


def test_padded_strings_pad_lazily_and_keep_the_originals() -> None:
    s = PaddedStrings([b"ab", b"cdef"], symbols=3)
    assert isinstance(s, list) and len(s) == 2
    first = next(iter(s))
    assert first.startswith(b"ab") and len(first) == 2 + pad_bytes(3, 2)
    assert set(first[2:]) == {0}
    assert s[1][:4] == b"cdef" and len(s[1]) == 4 + pad_bytes(3, 4)
    assert [x[:2] for x in s[0:2]] == [b"ab", b"cd"]


def _hostile_merged(codec_dir: Path, side: int, seed: int) -> bytes:
    """A merged-layout container (one string) of random bytes, valid CRC, declared size ``side``."""
    codec, _ = load_codec(codec_dir)
    header = bitstream.Header(
        codec_id=codec.codec_id, channels=1, height=side, width=side, align_log2=codec.align_log2
    )
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(8, 24, (), generator=g))
    body = (
        bytes(255 for _ in range(n))
        if seed % 2
        else bytes(torch.randint(0, 256, (n,), generator=g).tolist())
    )
    return bitstream.pack(bitstream.Container(header, (body,)))


def test_hostile_merged_strings_decode_without_crashing(tmp_path: Path) -> None:
    # The one-string layout goes through RansDecoder.decode_stream twice on one padded copy:
    # random and all-0xFF (maximal bypass) strings with large declared sizes must be refused or
    # decoded, never crash the process.
    if not JOINT_CODEC.is_dir():
        pytest.skip(f"{JOINT_CODEC} is not bundled")
    for name, codec_dir in (("golden", GOLDEN_CODEC), ("joint", JOINT_CODEC)):
        for side in (256, 512):
            for seed in (0, 1, 2, 3):
                payload = _hostile_merged(codec_dir, side, seed)
                (tmp_path / f"{name}-{side}x{side}-s{seed}.frc").write_bytes(payload)
    done = _decode_all_in_subprocess(tmp_path)
    assert len([line for line in done.stdout.split("\n") if line]) == 16


def test_merged_padding_leaves_valid_streams_unchanged() -> None:
    from compressai.ans import RansDecoder

    codec, _ = load_codec(GOLDEN_CODEC)
    g = torch.Generator().manual_seed(4)
    (payload,) = codec.encode(torch.rand(1, 1, 48, 48, generator=g), version=1)
    c = codec.parse(payload)
    assert len(c.strings) == 1
    guarded = codec.decode_latents([c])
    # The same stream read by the native decoder with no padding at all.
    dec = RansDecoder()
    dec.set_stream(c.strings[0])
    zt, yt = codec._z_tables, codec._y_tables
    z_idx = codec._eb._build_indexes((1, codec.config.N, 1, 1))
    z = dec.decode_stream(z_idx.reshape(-1).tolist(), zt.cdfs, zt.cdf_lengths, zt.offsets)
    z_hat = codec._eb.dequantize(torch.tensor(z).reshape(z_idx.shape), codec._z_medians(1, 2))
    idx, means = codec._gaussian_params(z_hat, (4, 4))
    y = dec.decode_stream(idx.reshape(-1).tolist(), yt.cdfs, yt.cdf_lengths, yt.offsets)
    raw = codec._gc.dequantize(torch.tensor(y).reshape(idx.shape), means, torch.float64)
    assert torch.equal(guarded, raw.float())
