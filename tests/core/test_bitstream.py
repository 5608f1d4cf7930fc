"""Tests for core.bitstream (container v1).

Golden vectors: ``FERCOMP_REGEN_GOLDEN=1 pytest tests/core/test_bitstream.py``
or ``python -m tests.core.test_bitstream`` rewrites tests/golden/container_v1_*.
Only do that for a deliberate format change (and bump FORMAT_VERSION).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from core.bitstream import (
    FORMAT_VERSION,
    MAGIC,
    BadMagic,
    BitstreamError,
    ChecksumMismatch,
    Container,
    DimensionsOutOfRange,
    Header,
    Limits,
    MalformedBitstream,
    TrailingData,
    TruncatedBitstream,
    UnknownCodec,
    UnsupportedVersion,
    pack,
    parse,
    read_header,
)
from tests.core.bitstream_cases import (
    CODEC,
    FUZZ,
    containers,
    crc,
    headers,
    leb,
    raw,
    valid,
)

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
GOLDEN_FRC = GOLDEN_DIR / "container_v1_48x48.frc"
GOLDEN_JSON = GOLDEN_DIR / "container_v1_48x48.json"


# --------------------------------------------------------------- round trip
@FUZZ
@given(containers)
def test_round_trip(c: Container) -> None:
    data = pack(c)
    assert parse(data) == c
    assert parse(bytearray(data)) == c
    assert parse(memoryview(data)) == c
    assert read_header(data) == c.header
    assert c.overhead_bytes == len(data) - sum(len(s) for s in c.strings)


def test_overhead_is_16_bytes_for_small_face() -> None:
    c = Container(Header(CODEC, 1, 48, 48, 6), (bytes(100), bytes(127)))
    assert c.overhead_bytes == 16
    assert len(pack(c)) == 16 + 227


@given(headers)
def test_padding(h: Header) -> None:
    (ph, pw), (dh, dw), block = h.padded_size, h.padding, 1 << h.align_log2
    assert ph % block == 0 and pw % block == 0
    assert 0 <= dh < block and 0 <= dw < block
    assert (ph - dh, pw - dw) == (h.height, h.width)


def test_padding_example() -> None:
    h = Header(CODEC, 3, 48, 100, 6)
    assert h.padded_size == (64, 128)
    assert h.padding == (16, 28)
    assert h.codec_id_hex == "0badc0de"


def test_read_header_needs_only_a_prefix() -> None:
    data = valid()
    assert read_header(data[:11]) == Header(CODEC, 1, 48, 48, 6)
    with pytest.raises(TruncatedBitstream):
        read_header(data[:10])
    with pytest.raises(DimensionsOutOfRange):
        read_header(raw(dims=leb(5000) + b"\x01"))


# ------------------------------------------------------ each error, by hand
@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"F",
        MAGIC,
        MAGIC + b"\x01" + CODEC[:2],
        valid()[:9],
        raw(dims=b"\x30")[:10],  # width missing
        raw(dims=b"\x30\xb0")[:11],  # width varint cut mid-way
        raw(strings=(b"abc",))[:-3],  # string cut
        valid()[:-1],  # CRC cut
        raw(strings=(b"x" * 200,))[:13],  # string length varint cut mid-way
    ],
)
def test_truncated(data: bytes) -> None:
    with pytest.raises(TruncatedBitstream) as e:
        parse(data)
    assert e.value.code == "truncated"


def test_length_past_end_is_truncated() -> None:
    body = raw(strings=(b"ab",))[:-2][:-3] + leb(1000) + b"ab"
    with pytest.raises(TruncatedBitstream):
        parse(body + crc(body))


@pytest.mark.parametrize("data", [b"X", b"FX", b"GR\x01", b"\x00" * 32, b"fr" + valid()[2:]])
def test_bad_magic(data: bytes) -> None:
    with pytest.raises(BadMagic) as e:
        parse(data)
    assert e.value.code == "bad_magic"


def test_unsupported_version() -> None:
    with pytest.raises(UnsupportedVersion) as e:
        parse(raw(version=7))
    assert e.value.code == "unsupported_version"
    assert "7" in str(e.value) and str(FORMAT_VERSION) in str(e.value)
    with pytest.raises(UnsupportedVersion):
        read_header(raw(version=0))


def test_unknown_codec() -> None:
    other = bytes.fromhex("deadbeef")
    with pytest.raises(UnknownCodec) as e:
        parse(valid(), known_codecs={other, bytes(4)})
    assert e.value.code == "unknown_codec"
    assert "deadbeef" in str(e.value) and "00000000" in str(e.value)
    assert parse(valid(), known_codecs=[CODEC, other]).header.codec_id == CODEC
    assert parse(valid()).header.codec_id == CODEC  # no list: not checked


@pytest.mark.parametrize(
    ("fields", "limits"),
    [
        ({"channels": 0}, Limits()),
        ({"channels": 5}, Limits()),
        ({"channels": 3}, Limits(max_channels=1)),
        ({"align": 9}, Limits()),
        ({"dims": b"\x00\x30"}, Limits()),
        ({"dims": b"\x30\x00"}, Limits()),
        ({"dims": leb(4097) + b"\x30"}, Limits()),
        ({"dims": b"\x30" + leb(4097)}, Limits()),
        ({"dims": b"\x0b\x0a"}, Limits(max_pixels=100)),  # 11x10
        ({"dims": b"\x30\x30"}, Limits(max_dim=32)),
    ],
)
def test_bad_dimensions(fields: dict[str, Any], limits: Limits) -> None:
    with pytest.raises(DimensionsOutOfRange) as e:
        parse(raw(**fields), limits)
    assert e.value.code == "bad_dimensions"
    with pytest.raises(DimensionsOutOfRange):
        read_header(raw(**fields), limits)


def test_dims_checked_before_strings_are_read() -> None:
    # Nothing after the dims: a reader that went on would say "truncated".
    head = MAGIC + b"\x01" + CODEC + b"\x01\x06" + leb(100_000) + leb(100_000)
    for data in (head, head + b"\x01\xff\xff\xff\x07"):
        with pytest.raises(DimensionsOutOfRange):
            parse(data)
        with pytest.raises(DimensionsOutOfRange):
            read_header(data)


def test_checksum_mismatch() -> None:
    data = bytearray(valid())
    data[-1] ^= 0x01
    with pytest.raises(ChecksumMismatch) as e:
        parse(bytes(data))
    assert e.value.code == "corrupt"
    data = bytearray(valid())
    data[-3] ^= 0x40  # last payload byte
    with pytest.raises(ChecksumMismatch):
        parse(bytes(data))


def test_trailing_data() -> None:
    with pytest.raises(TrailingData) as e:
        parse(valid() + b"\x00")
    assert e.value.code == "trailing_data"


@pytest.mark.parametrize(
    ("data", "limits"),
    [
        (raw(dims=b"\x80\x80\x80\x80\x80\x01\x30"), Limits()),  # 6-byte varint
        (raw(dims=b"\xb0\x00\x30"), Limits()),  # non-minimal 48
        (raw(dims=b"\x30\x30", count=b"\x82\x00"), Limits()),  # non-minimal count
        (raw(dims=b"\xff\xff\xff\xff\x1f\x30"), Limits()),  # > u32
        (raw(count=b"\x00", strings=()), Limits()),
        (raw(strings=(b"x",) * 9), Limits()),
        (raw(strings=(b"x",) * 3), Limits(max_strings=2)),
        (raw(count=b"\x01" + leb(100) + b"x", strings=()), Limits(max_total_bytes=64)),
        (valid() + bytes(64), Limits(max_total_bytes=64)),  # input too large
    ],
)
def test_malformed(data: bytes, limits: Limits) -> None:
    with pytest.raises(MalformedBitstream) as e:
        parse(data, limits)
    assert e.value.code == "malformed"


def test_codes_are_distinct_and_documented() -> None:
    classes = BitstreamError.__subclasses__()
    codes = {c.code for c in classes}
    assert codes == {
        "truncated",
        "bad_magic",
        "unsupported_version",
        "unknown_codec",
        "bad_dimensions",
        "corrupt",
        "trailing_data",
        "malformed",
    }
    assert all(c.__doc__ for c in classes)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "BITSTREAM.md").read_text()
    assert all(f"`{code}`" in doc for code in codes)


def test_check_order() -> None:
    # Bad magic and bad version together: magic wins; version before dims, etc.
    with pytest.raises(BadMagic):
        parse(b"XX" + raw(version=9)[2:])
    with pytest.raises(UnsupportedVersion):
        parse(raw(version=9, channels=0), known_codecs=[])
    with pytest.raises(UnknownCodec):
        parse(raw(channels=0), known_codecs=[])
    with pytest.raises(DimensionsOutOfRange):
        parse(raw(channels=0, count=b"\x00", strings=()))
    with pytest.raises(MalformedBitstream):  # structure before CRC
        parse(raw(count=b"\x00", strings=())[:-2] + b"\x00\x00")
    bad_crc = bytearray(valid())
    bad_crc[-1] ^= 0x01
    with pytest.raises(ChecksumMismatch):  # CRC before trailing
        parse(bytes(bad_crc) + b"\x00")


# ------------------------------------------------------------------- pack
@pytest.mark.parametrize(
    ("c", "err"),
    [
        (Container(Header(b"abc", 1, 48, 48, 6), (b"x",)), MalformedBitstream),
        (Container(Header(CODEC, 0, 48, 48, 6), (b"x",)), DimensionsOutOfRange),
        (Container(Header(CODEC, 1, 48, 0, 6), (b"x",)), DimensionsOutOfRange),
        (Container(Header(CODEC, 1, 48, 48, 9), (b"x",)), DimensionsOutOfRange),
        (Container(Header(CODEC, 1, 5000, 48, 6), (b"x",)), DimensionsOutOfRange),
        (Container(Header(CODEC, 1, 48, 48, 6), ()), MalformedBitstream),
        (Container(Header(CODEC, 1, 48, 48, 6), (b"x",) * 9), MalformedBitstream),
        (Container(Header(CODEC, 1, 48, 48, 6), (bytes(16 * 2**20),)), MalformedBitstream),
    ],
)
def test_pack_rejects(c: Container, err: type[BitstreamError]) -> None:
    with pytest.raises(err):
        pack(c)


def test_pack_custom_limits() -> None:
    c = Container(Header(CODEC, 8, 8000, 2, 0), (b"x",))
    lim = Limits(max_dim=8192, max_channels=8)
    assert parse(pack(c, lim), lim) == c
    with pytest.raises(DimensionsOutOfRange):
        parse(pack(c, lim))


# ----------------------------------------------------------------- golden
def _golden_container() -> Container:
    return Container(
        Header(codec_id=CODEC, channels=1, height=48, width=48, align_log2=6),
        (bytes(range(1, 13)), bytes.fromhex("deadbeef")),
    )


def _describe(c: Container, data: bytes) -> dict[str, Any]:
    h = c.header
    return {
        "format_version": data[2],
        "codec_id_hex": h.codec_id_hex,
        "channels": h.channels,
        "height": h.height,
        "width": h.width,
        "align_log2": h.align_log2,
        "padded_size": list(h.padded_size),
        "padding": list(h.padding),
        "strings_hex": [s.hex() for s in c.strings],
        "overhead_bytes": c.overhead_bytes,
        "size_bytes": len(data),
        "crc16_hex": data[-2:].hex(),
        "hex": data.hex(),
    }


def _make_golden() -> None:
    c = _golden_container()
    data = pack(c)
    spec = {"_comment": "generated by tests/core/test_bitstream.py::_make_golden"}
    spec |= _describe(c, data)
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    GOLDEN_FRC.write_bytes(data)
    GOLDEN_JSON.write_text(json.dumps(spec, indent=2) + "\n")


def test_golden_vector() -> None:
    if os.environ.get("FERCOMP_REGEN_GOLDEN") == "1":
        _make_golden()
    data = GOLDEN_FRC.read_bytes()
    spec = json.loads(GOLDEN_JSON.read_text())
    spec.pop("_comment", None)
    assert data.hex() == spec["hex"]
    c = parse(data)
    assert _describe(c, data) == spec
    assert c == _golden_container()
    # Rebuild from the JSON alone and demand the identical bytes.
    expected = Container(
        Header(
            codec_id=bytes.fromhex(spec["codec_id_hex"]),
            channels=spec["channels"],
            height=spec["height"],
            width=spec["width"],
            align_log2=spec["align_log2"],
        ),
        tuple(bytes.fromhex(s) for s in spec["strings_hex"]),
    )
    assert pack(expected) == data
    assert spec["overhead_bytes"] == 16


if __name__ == "__main__":
    _make_golden()
