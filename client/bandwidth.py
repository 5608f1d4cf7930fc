"""What the same faces would cost with standard image codecs, for the client's summary.

For every face the client sends, we also encode the *same* 48x48 model input with JPEG and
WebP (Pillow) at a fixed quality and count the raw pixel bytes. Quality 30 for both by default:
roughly where JPEG on 48x48 gray faces still keeps the expression readable; it is settable
because "matching quality" depends on the codec being compared. Numbers are file sizes (JPEG
includes its ~600 byte header/tables, which is the honest cost of sending one face as one JPEG).

``sent`` counts whole containers (a unary call, a ``.frc`` file). A stream with the compact
framing sends less per face (docs/BITSTREAM.md): ``stream`` counts the face records, to which a
9-byte stream header is added once per stream (and per switch of codec).
"""

from __future__ import annotations

import io
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, features

from core.face_image import array_to_uint8

DEFAULT_QUALITY = 30


def _as_image(face: Any) -> Image.Image:
    """A model input [C, H, W] in [0, 1] (numpy float array, or a torch tensor), or uint8
    pixels (H, W) / (H, W, C) as they are."""
    if isinstance(face, np.ndarray) and face.dtype == np.uint8:
        return Image.fromarray(face)
    return Image.fromarray(array_to_uint8(face))


def jpeg_size(face: NDArray[Any] | Any, quality: int = DEFAULT_QUALITY) -> int:
    buf = io.BytesIO()
    _as_image(face).save(buf, format="JPEG", quality=quality)
    return buf.tell()


def webp_size(face: NDArray[Any] | Any, quality: int = DEFAULT_QUALITY) -> int | None:
    """WebP size, or None when this Pillow was built without WebP."""
    if not features.check("webp"):
        return None
    buf = io.BytesIO()
    _as_image(face).save(buf, format="WEBP", quality=quality, method=6)
    return buf.tell()


@dataclass(frozen=True)
class BandwidthSummary:
    faces: int
    sent_bytes: int
    raw_bytes: int
    jpeg_bytes: int
    webp_bytes: int | None
    jpeg_quality: int
    webp_quality: int
    stream_bytes: int | None = None  # the same faces as compact stream records; None: unknown

    @staticmethod
    def _per(total: int | None, n: int) -> float | None:
        return None if total is None or n == 0 else total / n

    def _ratio(self, other: int | None) -> float | None:
        return None if other is None or self.sent_bytes == 0 else other / self.sent_bytes

    @property
    def sent_per_face(self) -> float | None:
        return self._per(self.sent_bytes, self.faces)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        n = self.faces
        d.update(
            sent_per_face=self._per(self.sent_bytes, n),
            stream_per_face=self._per(self.stream_bytes, n),
            jpeg_per_face=self._per(self.jpeg_bytes, n),
            webp_per_face=self._per(self.webp_bytes, n),
            raw_per_face=self._per(self.raw_bytes, n),
            jpeg_ratio=self._ratio(self.jpeg_bytes),  # how many times smaller than JPEG
            webp_ratio=self._ratio(self.webp_bytes),
            raw_ratio=self._ratio(self.raw_bytes),
        )
        return d

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        n = self.faces
        if n == 0:
            return ["faces: 0"]

        def cost(label: str, total: int | None) -> str:
            if total is None:
                return f"{label}: unavailable (Pillow without WebP)"
            ratio = self._ratio(total)
            times = f", {ratio:.1f}x ours" if ratio is not None else ""
            return f"{label}: {total:,} B ({total / n:.1f} B/face{times})"

        return [
            f"faces: {n}",
            f"sent: {self.sent_bytes:,} B ({self.sent_bytes / n:.1f} B/face)",
            *(
                [f"in a compact stream: {self.stream_bytes / n:.1f} B/face + 9 B per stream"]
                if self.stream_bytes is not None
                else []
            ),
            cost(f"JPEG q={self.jpeg_quality}", self.jpeg_bytes),
            cost(f"WebP q={self.webp_quality}", self.webp_bytes),
            cost("raw 8-bit", self.raw_bytes),
        ]


class BandwidthMeter:
    """Accumulates sent bytes and the JPEG/WebP/raw cost of the same faces (thread-safe)."""

    def __init__(
        self, jpeg_quality: int = DEFAULT_QUALITY, webp_quality: int = DEFAULT_QUALITY
    ) -> None:
        for q in (jpeg_quality, webp_quality):
            if not 1 <= q <= 100:
                raise ValueError(f"quality must be 1..100, got {q}")
        self.jpeg_quality = jpeg_quality
        self.webp_quality = webp_quality
        self._lock = threading.Lock()
        self._faces = self._sent = self._raw = self._jpeg = 0
        self._webp: int | None = 0
        self._stream: int | None = 0

    def add(
        self, face: NDArray[Any] | Any, sent_bytes: int, stream_bytes: int | None = None
    ) -> None:
        """One face (model input [C, H, W] in [0, 1], or uint8 pixels), its sent size and, if
        known, its size as a compact stream record (once one face lacks it, the total is
        unknown)."""
        img = _as_image(face)
        raw = img.width * img.height * len(img.getbands())
        jpeg = jpeg_size(np.asarray(img), self.jpeg_quality)
        webp = webp_size(np.asarray(img), self.webp_quality)
        with self._lock:
            self._faces += 1
            self._sent += sent_bytes
            self._raw += raw
            self._jpeg += jpeg
            self._webp = None if webp is None or self._webp is None else self._webp + webp
            if stream_bytes is None or self._stream is None:
                self._stream = None
            else:
                self._stream += stream_bytes

    def summary(self) -> BandwidthSummary:
        with self._lock:
            return BandwidthSummary(
                faces=self._faces,
                sent_bytes=self._sent,
                raw_bytes=self._raw,
                jpeg_bytes=self._jpeg,
                webp_bytes=self._webp,
                jpeg_quality=self.jpeg_quality,
                webp_quality=self.webp_quality,
                stream_bytes=self._stream if self._faces else None,
            )
