"""Container v1: the byte format of ``.frc`` files and gRPC payloads.

The layout is specified byte by byte in docs/BITSTREAM.md. Pure stdlib on
purpose: service, CLI and client all parse untrusted payloads and should not
need torch for that. ``parse`` bounds-checks every read and checks every
untrusted size against ``Limits`` before using it, so hostile input raises a
``BitstreamError`` subclass, never IndexError or MemoryError. The encoding is
canonical (minimal varints, no trailing bytes): ``pack(parse(b)) == b``.
"""

from __future__ import annotations

import binascii
from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

#: v1: strings of CompressAI's rANS coder (one merged string or ``[y, z]``); read only by the
#: server's guarded, process-isolated decoder. v2: exactly one string of constriction's ANS
#: coder (core/ans_coding.py). The container layout is the same; docs/BITSTREAM.md.
FORMAT_V1 = 1
FORMAT_V2 = 2
#: What encoders write now.
FORMAT_VERSION = FORMAT_V2
SUPPORTED_VERSIONS: tuple[int, ...] = (FORMAT_V1, FORMAT_V2)
MAGIC = b"FR"
CODEC_ID_LEN = 4
MAX_ALIGN_LOG2 = 8
MAX_VARINT_BYTES = 5
# 5 LEB128 bytes could hold 35 bits; capping at u32 keeps the format portable
# to readers that store sizes in 32-bit integers.
MAX_VARINT_VALUE = 2**32 - 1
CRC_LEN = 2
# magic + version + codec id + channels + alignment exponent
FIXED_HEADER_LEN = len(MAGIC) + 1 + CODEC_ID_LEN + 1 + 1
# ... + height and width varints: the most bytes read_header ever looks at.
MAX_HEADER_LEN = FIXED_HEADER_LEN + 2 * MAX_VARINT_BYTES


class BitstreamError(ValueError):
    """Base class of every parse/pack failure; ``code`` is stable for machines."""

    code: ClassVar[str] = "bitstream_error"

    def __init__(self, message: str, offset: int | None = None) -> None:
        # The offset goes into the message so that logs alone locate the fault.
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.detail = message  # without the offset, so the error can be re-pointed (face_error)
        self.offset = offset


class TruncatedBitstream(BitstreamError):
    """Data ends before the header, a varint, a string or the CRC is complete."""

    code = "truncated"


class BadMagic(BitstreamError):
    """The first bytes are not ``MAGIC``: this is not a fercomp container."""

    code = "bad_magic"


class UnsupportedVersion(BitstreamError):
    """The format version byte is not one this reader understands."""

    code = "unsupported_version"


class UnknownCodec(BitstreamError):
    """The codec id is not among the ``known_codecs`` the caller can decode."""

    code = "unknown_codec"


class DimensionsOutOfRange(BitstreamError):
    """Channels, alignment, height, width or H*W is outside ``Limits``."""

    code = "bad_dimensions"


class ChecksumMismatch(BitstreamError):
    """The structure parsed but the CRC-16 does not match: data is corrupt."""

    code = "corrupt"


class TrailingData(BitstreamError):
    """Bytes follow the CRC; a container must be exactly one message."""

    code = "trailing_data"


class MalformedBitstream(BitstreamError):
    """Structurally invalid: bad varint, string count or length, or oversize."""

    code = "malformed"


@dataclass(frozen=True)
class Limits:
    """Resource bounds applied before anything is allocated from the input."""

    max_dim: int = 4096
    max_pixels: int = 4096 * 4096
    max_channels: int = 4
    max_strings: int = 8
    max_total_bytes: int = 16 * 2**20


@dataclass(frozen=True)
class Header:
    codec_id: bytes
    channels: int
    height: int
    width: int
    align_log2: int
    #: Format version (decides how the strings are entropy-coded). The default is v1 only so
    #: that headers built field by field before v2 keep their meaning; encoders pass it.
    version: int = FORMAT_V1

    @property
    def padded_size(self) -> tuple[int, int]:
        """(H, W) rounded up to a multiple of 2**align_log2, as the codec sees it."""
        block = 1 << self.align_log2
        return (-(-self.height // block) * block, -(-self.width // block) * block)

    @property
    def padding(self) -> tuple[int, int]:
        """(pad_h, pad_w): rows/columns the decoder must crop off."""
        ph, pw = self.padded_size
        return ph - self.height, pw - self.width

    @property
    def codec_id_hex(self) -> str:
        return self.codec_id.hex()


@dataclass(frozen=True)
class Container:
    header: Header
    strings: tuple[bytes, ...]

    @property
    def overhead_bytes(self) -> int:
        """Encoded size minus the payload; computed, so it works without packing."""
        h = self.header
        return (
            FIXED_HEADER_LEN
            + _varint_len(h.height)
            + _varint_len(h.width)
            + _varint_len(len(self.strings))
            + sum(_varint_len(len(s)) for s in self.strings)
            + CRC_LEN
        )


def _varint_len(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _put_varint(out: bytearray, value: int, what: str) -> None:
    if not 0 <= value <= MAX_VARINT_VALUE:
        raise MalformedBitstream(f"{what} {value} does not fit in a u32 varint")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


class _Reader:
    """Bounds-checked cursor: every read either succeeds or raises Truncated."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.buf):
            left = len(self.buf) - self.pos
            raise TruncatedBitstream(f"{what}: need {n} bytes, {left} left", self.pos)
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str) -> int:
        start, value = self.pos, 0
        for i in range(MAX_VARINT_BYTES):
            byte = self.u8(what)
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                # Rejecting non-minimal forms keeps the encoding canonical, so a
                # given container has exactly one byte representation.
                if i > 0 and byte == 0:
                    raise MalformedBitstream(f"{what}: non-minimal varint", start)
                if value > MAX_VARINT_VALUE:
                    raise MalformedBitstream(f"{what}: varint exceeds u32", start)
                return value
        raise MalformedBitstream(f"{what}: varint longer than {MAX_VARINT_BYTES} bytes", start)


def _check_channels_align(
    channels: int, align_log2: int, limits: Limits, offset: int | None
) -> None:
    # Channels are a u8 on the wire, so cap there even if Limits is generous.
    max_ch = min(limits.max_channels, 255)
    if not 1 <= channels <= max_ch:
        raise DimensionsOutOfRange(f"channels {channels} outside 1..{max_ch}", offset)
    if not 0 <= align_log2 <= MAX_ALIGN_LOG2:
        raise DimensionsOutOfRange(
            f"alignment exponent {align_log2} outside 0..{MAX_ALIGN_LOG2}", offset
        )


def _check_dims(h: Header, limits: Limits, offset: int | None = None) -> None:
    _check_channels_align(h.channels, h.align_log2, limits, offset)
    for name, v in (("height", h.height), ("width", h.width)):
        if not 1 <= v <= limits.max_dim:
            raise DimensionsOutOfRange(f"{name} {v} outside 1..{limits.max_dim}", offset)
    if h.height * h.width > limits.max_pixels:
        raise DimensionsOutOfRange(
            f"{h.height}x{h.width} exceeds {limits.max_pixels} pixels", offset
        )


def _read_header(r: _Reader, limits: Limits, known_codecs: Collection[bytes] | None) -> Header:
    # Compare whatever prefix exists first, so that b"X" is reported as not a
    # container at all (bad_magic) rather than as a short one (truncated).
    head = r.buf[: len(MAGIC)]
    if head != MAGIC[: len(head)]:
        raise BadMagic(f"expected magic {MAGIC!r}, got {head!r}", 0)
    r.take(len(MAGIC), "magic")
    version = r.u8("format version")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_VERSIONS))
        raise UnsupportedVersion(f"format version {version}; supported: {supported}", 2)
    codec_id = r.take(CODEC_ID_LEN, "codec id")
    if known_codecs is not None:
        known = {bytes(c) for c in known_codecs}
        if codec_id not in known:
            listed = ", ".join(sorted(c.hex() for c in known)) or "(none)"
            raise UnknownCodec(f"codec {codec_id.hex()} not in known codecs: {listed}", 3)
    channels = r.u8("channels")
    align_log2 = r.u8("alignment exponent")
    height = r.varint("height")
    width = r.varint("width")
    header = Header(codec_id, channels, height, width, align_log2, version)
    # Checked here, before any string is read: a hostile header must not make
    # a caller (or a codec downstream) size buffers from unchecked numbers.
    _check_dims(header, limits, len(MAGIC) + 1 + CODEC_ID_LEN)
    return header


def _as_bytes(data: bytes | bytearray | memoryview, limits: Limits) -> bytes:
    view = memoryview(data)
    # nbytes, not len(): a memoryview of a non-byte format counts items.
    if view.nbytes > limits.max_total_bytes:
        raise MalformedBitstream(
            f"{view.nbytes} bytes exceeds the {limits.max_total_bytes}-byte limit"
        )
    return view.tobytes()


def read_header(data: bytes | bytearray | memoryview, limits: Limits = Limits()) -> Header:
    """Parse and validate only the header (magic, version, dims).

    Strings and CRC are not read, so a prefix of a file is enough; the header
    is therefore not integrity-checked. Use ``parse`` before trusting it.
    """
    view = memoryview(data)
    if view.c_contiguous:  # slice first so a whole file is never copied
        view = view.cast("B")[:MAX_HEADER_LEN]
    return _read_header(_Reader(view.tobytes()[:MAX_HEADER_LEN]), limits, None)


def parse(
    data: bytes | bytearray | memoryview,
    limits: Limits = Limits(),
    known_codecs: Collection[bytes] | None = None,
) -> Container:
    """Validate and decode one container; raises a ``BitstreamError`` subclass.

    Check order: total size, magic, version, codec (if ``known_codecs``), dims,
    string count and lengths, CRC, trailing bytes.
    """
    buf = _as_bytes(data, limits)
    r = _Reader(buf)
    header = _read_header(r, limits, known_codecs)
    at = r.pos
    count = r.varint("string count")
    if not 1 <= count <= limits.max_strings:
        raise MalformedBitstream(f"string count {count} outside 1..{limits.max_strings}", at)
    if header.version == FORMAT_V2 and count != 1:
        raise MalformedBitstream(f"a v2 container holds exactly 1 string, not {count}", at)
    strings = []
    for i in range(count):
        at = r.pos
        n = r.varint(f"length of string {i}")
        # A length no container could hold is nonsense (malformed); a plausible
        # length that merely runs past the data is a short read (truncated).
        if n > limits.max_total_bytes:
            raise MalformedBitstream(f"string {i} length {n} exceeds limit", at)
        strings.append(r.take(n, f"string {i}"))
    body_end = r.pos
    stored = int.from_bytes(r.take(CRC_LEN, "CRC"), "big")
    # CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over everything before it.
    actual = binascii.crc_hqx(memoryview(buf)[:body_end], 0xFFFF)
    if stored != actual:
        raise ChecksumMismatch(f"CRC {stored:04x} != computed {actual:04x}", body_end)
    if r.pos != len(buf):
        raise TrailingData(f"{len(buf) - r.pos} bytes after the CRC", r.pos)
    return Container(header, tuple(strings))


def pack(container: Container, limits: Limits = Limits()) -> bytes:
    """Encode ``container``; enforces the same limits ``parse`` does."""
    h = container.header
    if not isinstance(h.codec_id, (bytes, bytearray)) or len(h.codec_id) != CODEC_ID_LEN:
        raise MalformedBitstream(f"codec_id must be {CODEC_ID_LEN} bytes")
    _check_dims(h, limits)
    strings = container.strings
    if h.version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(f"format version {h.version}; supported: {SUPPORTED_VERSIONS}")
    if not 1 <= len(strings) <= limits.max_strings:
        raise MalformedBitstream(f"string count {len(strings)} outside 1..{limits.max_strings}")
    if h.version == FORMAT_V2 and len(strings) != 1:
        raise MalformedBitstream(f"a v2 container holds exactly 1 string, not {len(strings)}")
    # Size check before building, so an oversize container is never assembled.
    total = container.overhead_bytes + sum(len(s) for s in strings)
    if total > limits.max_total_bytes:
        raise MalformedBitstream(f"{total} bytes exceeds the {limits.max_total_bytes}-byte limit")
    out = bytearray(MAGIC)
    out.append(h.version)
    out += h.codec_id
    out.append(h.channels)
    out.append(h.align_log2)
    _put_varint(out, h.height, "height")
    _put_varint(out, h.width, "width")
    _put_varint(out, len(strings), "string count")
    for i, s in enumerate(strings):
        _put_varint(out, len(s), f"length of string {i}")
        out += s
    out += binascii.crc_hqx(out, 0xFFFF).to_bytes(CRC_LEN, "big")
    return bytes(out)
