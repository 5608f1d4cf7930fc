"""Compact stream framing: a stream sends the codec identity once, then header-less faces.

Every v1 container of one codec starts with the same 9 bytes (magic, version, codec id,
channels, alignment exponent: ``FIXED_HEADER_LEN``). In a ``ClassifyStream`` those bytes are
sent once as a *stream header*; each face then carries only the rest of its container, its
*face record*: height, width, string count, string lengths and bytes, and the CRC. The CRC is
the container's own, computed over the stream header bytes too, so rebuilding a container is
plain concatenation and a record glued to the wrong stream header fails the CRC like any other
corruption. Layout, rules and a worked example: docs/BITSTREAM.md, "Compact stream framing".

Pure stdlib like ``core.bitstream``: the server and the edge both frame untrusted bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.bitstream import (
    CODEC_ID_LEN,
    FIXED_HEADER_LEN,
    MAGIC,
    SUPPORTED_VERSIONS,
    BadMagic,
    BitstreamError,
    Limits,
    TrailingData,
    UnsupportedVersion,
    _check_channels_align,
    _Reader,
)

STREAM_HEADER_LEN = FIXED_HEADER_LEN  # the container prefix shared by all faces of a codec
DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class StreamHeader:
    codec_id: bytes
    channels: int
    align_log2: int

    @property
    def codec_id_hex(self) -> str:
        return self.codec_id.hex()


def parse_stream_header(
    data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS
) -> StreamHeader:
    """Validate a stream header: exactly the 9-byte prefix of a v1 container.

    Same checks, codes and offsets as the start of ``core.bitstream.parse``: ``bad_magic``,
    ``unsupported_version``, ``bad_dimensions`` (channels, alignment), ``truncated`` when
    shorter, ``trailing_data`` when longer. The codec id is not looked up here: a face whose
    codec the server lacks fails on its own (``unknown_codec``), as a full container would.
    """
    buf = bytes(data)
    head = buf[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise BadMagic(f"stream header: expected magic {MAGIC!r}, got {head!r}", 0)
    r = _Reader(buf)
    r.take(len(MAGIC), "stream header magic")
    version = r.u8("stream header format version")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise UnsupportedVersion(
            f"stream header format version {version}; supported: {supported}", 2
        )
    codec_id = r.take(CODEC_ID_LEN, "stream header codec id")
    channels = r.u8("stream header channels")
    align_log2 = r.u8("stream header alignment exponent")
    _check_channels_align(channels, align_log2, limits, len(MAGIC) + 1 + CODEC_ID_LEN)
    if r.pos != len(buf):
        raise TrailingData(f"{len(buf) - r.pos} bytes after the stream header", r.pos)
    return StreamHeader(codec_id, channels, align_log2)


def split(container: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
    """``(stream header, face record)`` of a container; ``join`` undoes it byte for byte.

    Only the stream header part is validated (raises its ``BitstreamError``); the record is
    whatever follows, checked by whoever rebuilds and parses it. This keeps the edge cheap and
    lets a damaged record reach the server, which reports it for that face alone.
    """
    buf = bytes(container)
    header = buf[:STREAM_HEADER_LEN]
    parse_stream_header(header)
    return header, buf[STREAM_HEADER_LEN:]


def join(stream_header: bytes, record: bytes) -> bytes:
    """The v1 container a face record stands for. Plain concatenation: validate the stream
    header when it arrives (``parse_stream_header``) and parse the result before trusting it."""
    return bytes(stream_header) + bytes(record)


def face_error(err: BitstreamError) -> BitstreamError:
    """``err`` from parsing a rebuilt container, re-pointed at the face record (offsets counted
    from the record's first byte), so the message names what the client actually sent."""
    if err.offset is not None and err.offset < STREAM_HEADER_LEN:
        return type(err)(f"stream header: {err.detail}", err.offset)
    at = None if err.offset is None else err.offset - STREAM_HEADER_LEN
    return type(err)(f"face record: {err.detail}", at)


def stream_bytes(containers: Iterable[bytes]) -> int:
    """What ``containers`` cost in a compact stream: every record, plus a stream header each
    time the codec prefix changes (the first face, and each switch of operating point)."""
    total, current = 0, b""
    for c in containers:
        header = bytes(c[:STREAM_HEADER_LEN])
        total += len(c) - STREAM_HEADER_LEN + (len(header) if header != current else 0)
        current = header
    return total
