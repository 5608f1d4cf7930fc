"""Face handling on the edge, before encoding: optional detection, crop, model input.

The codec and classifier were trained on tight 48x48 face crops (FER2013), so what the client
sends must look like one. Input images that are already face crops go straight to
``core.face_image.face_to_array``; photos and video frames can be run through OpenCV's bundled
Haar cascade first (``detect=True``): the largest face is kept, widened by a margin (Haar boxes
stop at the eyebrows and the lip line, FER2013 crops include forehead and chin) and made square.
When no face is found we fall back to the largest centred square and say so in the result
(``FaceCrop.fallback``) rather than failing: a video stream must go on.

Numpy inputs follow the OpenCV convention: 3-channel arrays are BGR (``cv2.VideoCapture``
frames), 4-channel arrays BGRA, 2-D arrays grayscale.

**Canonical orientation** (``canonical=True``; ``FerClient`` does it by default): before
anything else the whole image is flipped left-right when an exactly antisymmetric statistic of
its grayscale pixels says so (``mirror_moment``, the first horizontal moment; ties broken by the
image's bytes against its mirror's, ``canonical_orientation``). An image and its mirror image then
become the *same* pixels, so face detection, crop, encoding and the server's answer are the
same, byte for byte: a face and its mirror get the same expression by construction. The box
is reported in the orientation of the image given (``FaceCrop.mirrored`` says whether the
model input is the mirror).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from core.face_image import DEFAULT_SPEC, InputSpec, face_to_array, load_image

FaceInput = str | Path | Image.Image | NDArray[Any]
Box = tuple[int, int, int, int]  # x, y, width, height in source pixels

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DEFAULT_MARGIN = 0.2  # fraction of the detected box added on each side
DETECT_MAX_SIDE = 640  # detection runs on a downscaled copy: Haar cost grows with pixels


@dataclass(frozen=True)
class FaceCrop:
    """The model input for one face plus where it came from."""

    array: NDArray[np.float32]  # [C, H, W] float32 in [0, 1], the exact input of the codec
    box: Box  # crop in source pixels
    source_size: tuple[int, int]  # (width, height) of the source image
    detected: bool  # a face detector found this face
    fallback: bool  # detection was requested, found nothing: centre crop used
    mirrored: bool = False  # canonical orientation flipped the image: ``array`` is the mirror

    @property
    def note(self) -> str | None:
        return "no face detected; used the centre crop" if self.fallback else None


def _to_uint8(arr: NDArray[Any]) -> NDArray[np.uint8]:
    if arr.dtype == np.uint8:
        return arr
    scale = 255.0 if arr.size and float(arr.max()) <= 1.0 else 1.0
    return np.clip(arr.astype(np.float32) * scale, 0, 255).astype(np.uint8)


def _as_pil(image: FaceInput) -> Image.Image:
    """Any supported input -> PIL image in mode L or RGB (numpy colour arrays are BGR)."""
    if isinstance(image, str | Path):
        im = load_image(image)
    elif isinstance(image, np.ndarray):
        arr = _to_uint8(image)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim == 2:
            return Image.fromarray(arr, mode="L")
        if arr.ndim == 3 and arr.shape[2] in (3, 4):
            code = cv2.COLOR_BGR2RGB if arr.shape[2] == 3 else cv2.COLOR_BGRA2RGB
            return Image.fromarray(cv2.cvtColor(arr, code), mode="RGB")
        raise ValueError(f"unsupported image array shape {arr.shape}")
    elif isinstance(image, Image.Image):
        im = image
    else:
        raise TypeError(f"unsupported image type {type(image).__name__}")
    if im.width < 1 or im.height < 1:
        raise ValueError("empty image")
    return im if im.mode in ("L", "RGB") else im.convert("RGB")


def centre_box(width: int, height: int) -> Box:
    """The largest centred square."""
    side = min(width, height)
    return ((width - side) // 2, (height - side) // 2, side, side)


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """Grow ``box`` by ``margin`` of its size on each side, make it square, keep it inside.

    The square is shifted (not clipped) when it crosses a border so the face keeps its aspect
    ratio; only when it is larger than the image is it shrunk to the short side.
    """
    x, y, w, h = box
    side = round(max(w, h) * (1.0 + 2.0 * margin))
    side = max(1, min(side, width, height))
    cx, cy = x + w / 2.0, y + h / 2.0
    x0 = round(min(max(cx - side / 2.0, 0.0), width - side))
    y0 = round(min(max(cy - side / 2.0, 0.0), height - side))
    return (x0, y0, side, side)


class FaceDetector:
    """OpenCV Haar cascade; thread-safe (``CascadeClassifier`` itself is not)."""

    def __init__(
        self,
        cascade_path: str | Path | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size_frac: float = 0.1,
        mirror_consistent: bool = True,
    ) -> None:
        # cv2.data exists at runtime; opencv's stubs leave the submodule out.
        cascades = cv2.data.haarcascades  # type: ignore[attr-defined]
        path = str(cascade_path or Path(cascades) / CASCADE_FILE)
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise OSError(f"cannot load face cascade {path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_frac = min_size_frac
        # The Haar cascade is not mirror-symmetric: on the demo photo it boxes the face at
        # x 110, side 311 and the mirrored face at x 79, side 335 (mirrored back: 98 / 335),
        # so a face and its mirror image reached the codec as different crops and got different
        # expressions. Averaging each box with its match on the mirrored image makes
        # detect(mirror(image)) == mirror(detect(image)) up to rounding, for 2x detection time.
        self.mirror_consistent = mirror_consistent
        self._lock = threading.Lock()

    def detect(self, gray: NDArray[Any]) -> list[Box]:
        """All faces in a grayscale uint8 image, largest first (mirror-consistent by default)."""
        boxes = self._detect_once(gray)
        if not self.mirror_consistent or not boxes:
            return boxes
        w = gray.shape[1]
        mirrored = [(w - x - bw, y, bw, bh) for x, y, bw, bh in self._detect_once(gray[:, ::-1])]
        return sorted(
            (_average_with_match(b, mirrored) for b in boxes),
            key=lambda b: b[2] * b[3],
            reverse=True,
        )

    def _detect_once(self, gray: NDArray[Any]) -> list[Box]:
        h, w = gray.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = (
            gray
            if scale == 1.0
            else cv2.resize(
                gray,
                (max(1, round(w * scale)), max(1, round(h * scale))),
                interpolation=cv2.INTER_AREA,
            )
        )
        min_side = max(20, int(self.min_size_frac * min(small.shape[:2])))
        if min(small.shape[:2]) < min_side:
            return []
        with self._lock:
            found = self._cascade.detectMultiScale(
                small,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(min_side, min_side),
            )
        boxes = [
            (round(x / scale), round(y / scale), round(bw / scale), round(bh / scale))
            for x, y, bw, bh in (tuple(int(v) for v in f) for f in found)
        ]
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def _iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def _average_with_match(box: Box, candidates: list[Box], min_iou: float = 0.3) -> Box:
    """``box`` averaged with the candidate it overlaps most (itself when none overlaps enough)."""
    best = max(candidates, key=lambda c: _iou(box, c), default=None)
    if best is None or _iou(box, best) < min_iou:
        return box
    # Average edges, not corner + size, so that the mirrored computation is the exact mirror.
    x0, x1 = (box[0] + best[0]) / 2, (box[0] + box[2] + best[0] + best[2]) / 2
    y0, y1 = (box[1] + best[1]) / 2, (box[1] + box[3] + best[1] + best[3]) / 2
    return (round(x0), round(y0), round(x1) - round(x0), round(y1) - round(y0))


_default_detector: FaceDetector | None = None
_default_lock = threading.Lock()


def default_detector() -> FaceDetector:
    """One shared detector: loading the cascade XML costs ~50 ms."""
    global _default_detector
    with _default_lock:
        if _default_detector is None:
            _default_detector = FaceDetector()
        return _default_detector


def mirror_moment(gray: NDArray[Any]) -> int:
    """The first horizontal moment of a grayscale image about its vertical centre line,
    ``sum over y, x of (2x - (W - 1)) * I[y, x]``, exactly, in integers: the mirror image's is
    exactly its negative (0 for a left-right symmetric image)."""
    g = np.asarray(gray)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {g.shape}")
    width = g.shape[1]
    columns = g.sum(axis=0, dtype=np.int64)  # <= 255 * H per column: exact
    weights = 2 * np.arange(width, dtype=np.int64) - (width - 1)
    return int(np.dot(weights, columns))


def canonical_orientation(im: Image.Image) -> tuple[Image.Image, NDArray[np.uint8], bool]:
    """(``im`` in its canonical orientation, that image's grayscale pixels, whether it is the
    mirror). The mirror is canonical when the first horizontal moment of the grayscale pixels
    (``mirror_moment``) is negative, or when it is 0 and the mirror's pixel bytes sort first.
    For an image and its mirror exactly one of the two is flipped (unless both are the same
    pixels), so both come out as the same image."""
    gray = np.asarray(im.convert("L"))
    moment = mirror_moment(gray)
    mirror: Image.Image | None = None
    if moment == 0:
        mirror = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        flip = mirror.tobytes() < im.tobytes()
    else:
        flip = moment < 0
    if not flip:
        return im, gray, False
    if mirror is None:
        mirror = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return mirror, np.ascontiguousarray(gray[:, ::-1]), True


def mirror_box(box: Box, width: int) -> Box:
    """``box`` in the left-right mirror of an image ``width`` pixels wide."""
    x, y, w, h = box
    return (width - x - w, y, w, h)


def prepare_face(
    image: FaceInput,
    detect: bool = False,
    spec: InputSpec = DEFAULT_SPEC,
    margin: float = DEFAULT_MARGIN,
    detector: FaceDetector | None = None,
    canonical: bool = False,
) -> FaceCrop:
    """Image -> model input. Without ``detect`` the whole image is taken to be the face.

    ``canonical``: flip the whole image into its canonical left-right orientation first (module
    docstring), so that an image and its mirror give the same model input; ``box`` stays in
    the coordinates of the image given."""
    im = _as_pil(image)
    width, height = im.size
    gray: NDArray[Any] | None = None
    mirrored = False
    if canonical:
        im, gray, mirrored = canonical_orientation(im)
    box: Box = (0, 0, width, height)
    detected = fallback = False
    if detect:
        if gray is None:
            gray = np.asarray(im.convert("L"))
        faces = (detector or default_detector()).detect(gray)
        if faces:
            box, detected = expand_box(faces[0], margin, width, height), True
        else:
            box, fallback = centre_box(width, height), True
    crop = (
        im
        if box == (0, 0, width, height)
        else im.crop((box[0], box[1], box[0] + box[2], box[1] + box[3]))
    )
    return FaceCrop(
        array=face_to_array(crop, spec),
        box=mirror_box(box, width) if mirrored else box,
        source_size=(width, height),
        detected=detected,
        fallback=fallback,
        mirrored=mirrored,
    )
