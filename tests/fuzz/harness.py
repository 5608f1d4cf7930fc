"""Fuzz target: untrusted bytes -> container parse -> entropy decoding -> synthesis.

Most random mutations of a container die at the CRC check, so the entropy decoder — where the
crash of issue 9 lived — is rarely reached. This harness builds *structured* inputs: it takes a
real encoded face, lets the fuzzer choose the header fields (format version, size up to the
server's ``max_image_side``, channels, alignment) and the bytes and lengths of its entropy
strings (a v1 face's rANS string, a v2 face's ANS string), then
packs the container with a correct CRC, so every input reaches the rANS decoder and the
synthesis transform. One byte in four instead goes in raw, to keep the parser covered too.

The decode path is the server's: ``bitstream.parse`` with the server's limits, then
``FaceCodec.parse`` / ``decode_latents`` (v1 guarded, inline; v2 in-process as served) /
``synthesize``. ``VERSIONS`` picks the formats fuzzed (``--format 2``: v2 only). Any exception other
than a ``BitstreamError`` is a finding, and so is a crash (the runner runs this in a child).

    python -m scripts.fuzz_decoder --runs 100000          # atheris, coverage-guided (make fuzz)
    python -m tests.fuzz.harness --slice 200 --seed 0     # a deterministic slice, no atheris
"""

from __future__ import annotations

import argparse
import random
import sys
from functools import cache
from pathlib import Path

import torch

from core import bitstream
from core.artifacts import load_codec
from core.face_codec import FaceCodec

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CODEC = ROOT / "models" / "face-hyperprior-joint-l0.025" / "3"
MAX_SIDE = 128  # service.settings.Settings.max_image_side default
LIMITS = bitstream.Limits(max_dim=MAX_SIDE, max_pixels=MAX_SIDE * MAX_SIDE, max_total_bytes=1 << 20)
#: Format versions the harness builds (the runner's ``--format`` narrows it).
VERSIONS: tuple[int, ...] = bitstream.SUPPORTED_VERSIONS


@cache
def _seeds(path: str) -> tuple[FaceCodec, dict[int, bitstream.Container]]:
    torch.set_num_threads(1)
    codec = load_codec(path)[0]
    seeds = {}
    for version in bitstream.SUPPORTED_VERSIONS:
        g = torch.Generator().manual_seed(0)
        (seed,) = codec.encode(torch.rand(1, 1, 48, 48, generator=g), version=version)
        seeds[version] = codec.parse(seed)
    return codec, seeds


def _codec(path: str | None = None) -> tuple[FaceCodec, bitstream.Container]:
    """The codec and a real face of the newest fuzzed format."""
    codec, seeds = _seeds(path or str(DEFAULT_CODEC))
    return codec, seeds[max(VERSIONS)]


class _Bytes:
    """A tiny FuzzedDataProvider: consumes the input from the front, zeros when exhausted."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def int(self, lo: int, hi: int) -> int:
        raw = int.from_bytes(self.take(2), "little")
        return lo + raw % (hi - lo + 1)

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out.ljust(n, b"\0")

    def rest(self) -> bytes:
        return self.data[self.pos :]


def build(data: bytes) -> bytes:
    """The container the harness decodes for fuzzer input ``data``."""
    _, seeds = _seeds(str(DEFAULT_CODEC))
    if not data or data[0] % 4 == 0:
        return data[1:]  # raw: the parser's own checks
    p = _Bytes(data[1:])
    version = VERSIONS[p.int(0, len(VERSIONS) - 1)]
    seed = seeds[version]
    h = bitstream.Header(
        codec_id=seed.header.codec_id if p.int(0, 15) else p.take(4),
        channels=1 if p.int(0, 15) else p.int(1, 4),
        height=p.int(1, MAX_SIDE),
        width=p.int(1, MAX_SIDE),
        align_log2=seed.header.align_log2 if p.int(0, 15) else p.int(0, 8),
        version=version,
    )
    strings = []
    for s in seed.strings:
        mode = p.int(0, 3)
        if mode == 0:  # keep the real string, flip a few bytes
            b = bytearray(s)
            for _ in range(p.int(0, 4)):
                b[p.int(0, len(b) - 1)] ^= p.int(1, 255)
            strings.append(bytes(b))
        elif mode == 1:  # fuzzer-chosen bytes of a fuzzer-chosen length
            strings.append(p.take(p.int(0, 64)))
        elif mode == 2:  # truncated or extended real string
            n = p.int(0, 2 * len(s))
            strings.append((s + p.take(max(0, n - len(s))))[:n])
        else:
            strings.append(p.rest()[:512])
    try:
        return bitstream.pack(bitstream.Container(h, tuple(strings)), LIMITS)
    except bitstream.BitstreamError:
        return data[1:]


def one_input(data: bytes) -> None:
    """Decode one fuzzer input like the server would; only BitstreamError may escape."""
    codec, _ = _codec()
    payload = build(data)
    try:
        c = bitstream.parse(payload, LIMITS, known_codecs=[codec.codec_id])
        c = codec.parse(payload, LIMITS)
        y_hat = codec.decode_latents([c])
    except bitstream.BitstreamError:
        return
    x = codec.synthesize(y_hat, c.header.height, c.header.width)
    assert x.shape == (1, 1, c.header.height, c.header.width)
    assert bool(torch.isfinite(x).all())


def deterministic_slice(n: int, seed: int) -> int:
    """``n`` structured inputs from a seeded RNG; returns how many reached the decoder."""
    rnd = random.Random(seed)
    codec, _ = _codec()
    reached = 0
    for _ in range(n):
        data = bytes([rnd.randrange(1, 256) | 1]) + rnd.randbytes(rnd.randrange(8, 200))
        one_input(data)
        try:
            codec.parse(build(data), LIMITS)
            reached += 1
        except bitstream.BitstreamError:
            pass
    return reached


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--slice", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    reached = deterministic_slice(a.slice, a.seed)
    print(f"ran {a.slice} inputs, {reached} reached entropy decoding", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
