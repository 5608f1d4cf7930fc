"""Shared inputs for the container tests: a hand-made encoder and hypothesis strategies.

The hand-made encoder (``_raw``) deliberately does not reuse core.bitstream, so malformed
inputs are built independently of the code under test.
"""

from __future__ import annotations

import binascii

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from core.bitstream import MAGIC, BitstreamError, Container, Header, pack, parse

CODEC = bytes.fromhex("0badc0de")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def leb(n: int) -> bytes:
    """Independent LEB128 encoder, so hand-made inputs don't reuse the code under test."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >= 0x80 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def crc(body: bytes) -> bytes:
    return binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")


def raw(
    *,
    version: int = 1,
    codec: bytes = CODEC,
    channels: int = 1,
    align: int = 6,
    dims: bytes = b"\x30\x30",
    count: bytes | None = None,
    strings: tuple[bytes, ...] = (b"\x01\x02\x03", b"\x04"),
) -> bytes:
    """A container assembled by hand with a *valid* CRC, fields freely wrong."""
    body = MAGIC + bytes([version]) + codec + bytes([channels, align]) + dims
    body += leb(len(strings)) if count is None else count
    body += b"".join(leb(len(s)) + s for s in strings)
    return body + crc(body)


def valid() -> bytes:
    return raw()


def parse_total(data: bytes) -> None:
    """parse must succeed canonically or raise a BitstreamError, nothing else."""
    try:
        c = parse(data)
    except BitstreamError as e:
        assert type(e) is not BitstreamError and e.code != BitstreamError.code
        assert isinstance(e, ValueError)
        return
    assert pack(c) == data  # accepted input is canonical


headers = st.builds(
    Header,
    codec_id=st.binary(min_size=4, max_size=4),
    channels=st.integers(1, 4),
    height=st.integers(1, 4096),
    width=st.integers(1, 4096),
    align_log2=st.integers(0, 8),
)
containers = st.builds(
    Container,
    header=headers,
    strings=st.lists(st.binary(max_size=300), min_size=1, max_size=8).map(tuple),
)
