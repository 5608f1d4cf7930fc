"""The client's Haar cascade (client.faces) next to dlib's HOG frontal face detector, the
candidate replacement docs/CLIENT.md ("Over the 300 MB target") weighs: which faces each finds
on the images the demo and the tests use, how their boxes compare, and what a detection costs.

dlib is not a dependency of the project; run this in a throwaway venv that has it:

    python3.11 -m venv /tmp/detvenv && /tmp/detvenv/bin/pip install 'numpy<2' pillow \\
        opencv-python-headless==4.11.0.86 dlib-bin
    MPL="$(.venv/bin/python -c 'import matplotlib as m; print(m.get_data_path())')"
    PYTHONPATH=. /tmp/detvenv/bin/python -m benchmarks.face_detectors \\
        --photo "$MPL/sample_data/grace_hopper.jpg" --data ../shared/data/fer2013.npz --faces 500

Both run on the same grayscale copy, downscaled to at most 640 px (client.faces does so for the
cascade); dlib's ``upsample`` doubles the image that many times first (it finds no face under
~80 px without it). "mirror error" is how far (px, largest of the four edges) the box found on
the mirrored image, mirrored back, is from the box found on the image itself: 0 would make the
client's mirror averaging (``FaceDetector(mirror_consistent=True)``) unnecessary.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import dlib
import numpy as np
from PIL import Image

from cli.demo import jittered_crops, photo_variants
from client.faces import DETECT_MAX_SIDE, Box, FaceDetector, _iou, mirror_box

Detect = Callable[[np.ndarray[Any, Any]], list[Box]]


def dlib_detector(upsample: int) -> Detect:
    hog = dlib.get_frontal_face_detector()

    def detect(gray: np.ndarray[Any, Any]) -> list[Box]:
        h, w = gray.shape
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = gray if scale == 1.0 else cv2.resize(
            gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA
        )  # fmt: skip
        found = hog(np.ascontiguousarray(small), upsample)
        boxes: list[Box] = []
        for r in found:
            x, y, w, h = (round(v / scale) for v in (r.left(), r.top(), r.width(), r.height()))
            boxes.append((x, y, w, h))
        return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)

    return detect


def demo_images(photo: Path) -> dict[str, np.ndarray[Any, Any]]:
    """cli.demo's five variants of the photo, grayscale."""
    variants = photo_variants(Image.open(photo).convert("RGB"))
    return {k: np.asarray(v.convert("L")) for k, v in variants.items()}


def test_frames(photo: Path, n: int, seed: int) -> list[np.ndarray[Any, Any]]:
    """tests/client/conftest.py ``hopper_frames``: 160 px frames of the face, jittered."""
    crops = jittered_crops(Image.open(photo).convert("RGB"), n, 160, seed)
    return [np.asarray(im.convert("L")) for im in crops]


def mirror_error(detect: Detect, gray: np.ndarray[Any, Any]) -> int | None:
    a, b = detect(gray), detect(np.ascontiguousarray(gray[:, ::-1]))
    if not a or not b:
        return None
    x, y, w, h = a[0]
    mx, my, mw, mh = mirror_box(b[0], gray.shape[1])
    return max(abs(x - mx), abs(y - my), abs(x + w - mx - mw), abs(y + h - my - mh))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", type=Path, required=True, help="matplotlib's grace_hopper.jpg")
    ap.add_argument("--data", type=Path, help="fer2013.npz: also run on PublicTest faces")
    ap.add_argument("--faces", type=int, default=500, help="PublicTest faces (the first N)")
    args = ap.parse_args(argv)
    haar = FaceDetector(mirror_consistent=False)
    detectors: dict[str, Detect] = {
        "haar": haar.detect,
        "dlib-hog": dlib_detector(0),
        "dlib-hog-up1": dlib_detector(1),
    }
    print("## demo photos: largest box (x, y, w, h), faces found, mirror error (px)")
    for name, gray in demo_images(args.photo).items():
        cells = []
        for det_name, det in detectors.items():
            boxes = det(gray)
            cells.append(f"{det_name} {boxes[0] if boxes else None} n={len(boxes)} "
                         f"mirror={mirror_error(det, gray)}")  # fmt: skip
        a, b = detectors["haar"](gray), detectors["dlib-hog"](gray)
        iou = f"{_iou(a[0], b[0]):.2f}" if a and b else "-"
        print(f"{name}: " + "; ".join(cells) + f"; IoU haar vs dlib-hog {iou}")
    flat = [np.full((64, 64), 20 * i, np.uint8) for i in range(7)]  # tests' flat video frames
    for label, frames in [
        ("hopper_frames(30)", test_frames(args.photo, 30, 0)),
        ("hopper_frames(4, seed=1)", test_frames(args.photo, 4, 1)),
        ("flat frames (7)", flat),
    ]:
        found = {k: [d(f) for f in frames] for k, d in detectors.items()}
        ious = [
            _iou(a[0], b[0])
            for a, b in zip(found["haar"], found["dlib-hog"], strict=True)
            if a and b
        ]
        counts = ", ".join(f"{k} {sum(map(bool, v))}/{len(frames)}" for k, v in found.items())
        print(f"{label}: {counts}; IoU haar vs dlib-hog mean {np.mean(ious) if ious else 0:.2f}")
    photo = np.asarray(Image.open(args.photo).convert("L"))
    for label, gray in [("512x600 photo", photo), ("1920x1080", cv2.resize(photo, (1920, 1080)))]:
        for det_name, det in detectors.items():
            det(gray)
            t0 = time.perf_counter()
            for _ in range(10):
                det(gray)
            print(f"time {label} {det_name}: {(time.perf_counter() - t0) * 100:.1f} ms")
    if args.data:
        d = np.load(args.data)
        faces = d["images"][np.flatnonzero(d["split"] == "PublicTest")[: args.faces]]
        for det_name, det in detectors.items():
            t0 = time.perf_counter()
            hits = sum(bool(det(np.ascontiguousarray(f))) for f in faces)
            ms = (time.perf_counter() - t0) / len(faces) * 1e3
            print(f"PublicTest first {len(faces)} (48x48): {det_name} finds a face in {hits} "
                  f"({100 * hits / len(faces):.1f} %), {ms:.2f} ms/face")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
