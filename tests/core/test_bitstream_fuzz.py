"""Fuzzing the container parser: anything that is not a canonical container is refused
with a specific BitstreamError, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.bitstream import (
    MAGIC,
    BitstreamError,
    Container,
    TrailingData,
    TruncatedBitstream,
    pack,
    parse,
)
from tests.core.bitstream_cases import CODEC, FUZZ, containers, parse_total


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    parse_total(data)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_random_after_magic(tail: bytes) -> None:
    parse_total(MAGIC + b"\x01" + tail)
    parse_total(MAGIC + b"\x01" + CODEC + tail)


@FUZZ
@given(containers, st.data())
def test_fuzz_truncation(c: Container, data: st.DataObject) -> None:
    full = pack(c)
    cut = data.draw(st.integers(0, len(full) - 1))
    with pytest.raises(TruncatedBitstream):
        parse(full[:cut])


@FUZZ
@given(containers, st.data())
def test_fuzz_byte_flip(c: Container, data: st.DataObject) -> None:
    buf = bytearray(pack(c))
    i = data.draw(st.integers(0, len(buf) - 1))
    buf[i] ^= data.draw(st.integers(1, 255))
    # CRC-16 catches any single-byte error, and a shifted structure ends in
    # truncated/trailing_data, so a flip is never accepted.
    with pytest.raises(BitstreamError):
        parse(bytes(buf))


@FUZZ
@given(containers, st.binary(min_size=1, max_size=64))
def test_fuzz_appended_garbage(c: Container, garbage: bytes) -> None:
    with pytest.raises(TrailingData):
        parse(pack(c) + garbage)


@FUZZ
@given(containers, st.data())
def test_fuzz_splice(c: Container, data: st.DataObject) -> None:
    # Insert or delete a random run: shifts every later field.
    buf = pack(c)
    i = data.draw(st.integers(0, len(buf)))
    j = data.draw(st.integers(i, min(len(buf), i + 8)))
    parse_total(buf[:i] + data.draw(st.binary(max_size=8)) + buf[j:])
