"""Compact stream framing (core.stream_framing): golden vectors, round trips, errors.

The hex below is also printed in docs/BITSTREAM.md ("Compact stream framing"); the last test
checks the document still shows exactly these bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.bitstream import (
    BadMagic,
    ChecksumMismatch,
    Container,
    DimensionsOutOfRange,
    Header,
    TrailingData,
    TruncatedBitstream,
    UnsupportedVersion,
    pack,
    parse,
)
from core.stream_framing import (
    STREAM_HEADER_LEN,
    face_error,
    join,
    parse_stream_header,
    split,
    stream_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "container_v1_48x48.frc"

# Stream header shared by both faces: magic, version 1, codec 0badc0de, 1 channel, align 6.
HEADER_HEX = "46 52 01 0b ad c0 de 01 06"
# Face 1 is the golden container (48x48, strings of 12 and 4 bytes, CRC abc2).
FACE1_RECORD_HEX = "30 30 02 0c 01 02 03 04 05 06 07 08 09 0a 0b 0c 04 de ad be ef ab c2"
# Face 2: 40x44, strings a1a2a3 and b1, CRC 8b19 (over header + record).
FACE2_RECORD_HEX = "28 2c 02 03 a1 a2 a3 01 b1 8b 19"


def _hex(spaced: str) -> bytes:
    return bytes.fromhex(spaced.replace(" ", ""))


def _face2() -> bytes:
    h = Header(bytes.fromhex("0badc0de"), 1, 40, 44, 6)
    return pack(Container(h, (bytes.fromhex("a1a2a3"), bytes.fromhex("b1"))))


def test_golden_split_and_join_are_byte_exact() -> None:
    golden = GOLDEN.read_bytes()
    header, record = split(golden)
    assert (header, record) == (_hex(HEADER_HEX), _hex(FACE1_RECORD_HEX))
    assert join(header, record) == golden
    assert split(_face2()) == (_hex(HEADER_HEX), _hex(FACE2_RECORD_HEX))
    assert parse(join(header, _hex(FACE2_RECORD_HEX))).header.height == 40
    # 16 bytes of container overhead per face become 7 (+ 9 once per stream).
    assert len(golden) - len(record) == STREAM_HEADER_LEN == 9
    h = parse_stream_header(header)
    assert (h.codec_id_hex, h.channels, h.align_log2) == ("0badc0de", 1, 6)


def test_stream_bytes_counts_a_header_per_codec_switch() -> None:
    golden, face2 = GOLDEN.read_bytes(), _face2()
    other = golden[:3] + b"\xde\xad\xbe\xef" + golden[7:]  # another codec's prefix
    assert stream_bytes([golden, face2]) == 9 + 23 + 11
    assert stream_bytes([golden, other, golden]) == 3 * (9 + 23)
    assert stream_bytes([]) == 0


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"XR\x01\x0b\xad\xc0\xde\x01\x06", BadMagic),
        (b"FR\x03\x0b\xad\xc0\xde\x01\x06", UnsupportedVersion),
        (b"FR\x01\x0b\xad\xc0\xde\x00\x06", DimensionsOutOfRange),  # 0 channels
        (b"FR\x01\x0b\xad\xc0\xde\x01\x09", DimensionsOutOfRange),  # align 9
        (b"FR\x01\x0b\xad\xc0\xde\x01", TruncatedBitstream),
        (b"", TruncatedBitstream),
        (b"FR\x01\x0b\xad\xc0\xde\x01\x06\x30", TrailingData),  # a container, not a header
    ],
)
def test_invalid_stream_headers_are_refused(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_stream_header(data)


def test_split_refuses_what_is_not_a_container() -> None:
    with pytest.raises(BadMagic):
        split(b"garbage!")
    with pytest.raises(TruncatedBitstream):
        split(b"FR\x01")


def test_damaged_record_is_reported_against_the_record() -> None:
    header, record = split(GOLDEN.read_bytes())
    bad = bytearray(record)
    bad[5] ^= 0x01  # inside string 0
    with pytest.raises(ChecksumMismatch) as ei:
        parse(join(header, bytes(bad)))
    err = face_error(ei.value)
    assert isinstance(err, ChecksumMismatch) and err.code == "corrupt"
    assert err.offset == len(record) - 2  # the CRC's position within the record
    assert str(err).startswith("face record: CRC abc2")
    with pytest.raises(TruncatedBitstream) as et:
        parse(join(header, record[:-3]))
    assert str(face_error(et.value)).startswith("face record: string 1")


def test_a_record_glued_to_another_codec_header_fails_its_crc() -> None:
    header, record = split(GOLDEN.read_bytes())
    alien = header[:3] + b"\xde\xad\xbe\xef" + header[7:]
    with pytest.raises(ChecksumMismatch):
        parse(join(alien, record))


def test_docs_show_the_golden_vectors() -> None:
    doc = (ROOT / "docs" / "BITSTREAM.md").read_text()
    for spaced in (HEADER_HEX, FACE1_RECORD_HEX, FACE2_RECORD_HEX):
        assert spaced in doc, spaced
