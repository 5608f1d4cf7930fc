"""Face images as model input, in numpy only: what the torch-free edge client needs.

One function turns any face crop (file, PIL image, numpy array, video frame) into the model's
input: grayscale, resized to 48x48 with antialiasing, float32 in [0, 1], shape [1, 48, 48].
``core.preprocess`` wraps it for torch (``face_to_tensor``) and re-exports the rest, so training
and the server see exactly the same pixels as the edge. This module never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm")


@dataclass(frozen=True)
class InputSpec:
    height: int = 48
    width: int = 48
    channels: int = 1

    def to_dict(self) -> dict[str, int]:
        return {"height": self.height, "width": self.width, "channels": self.channels}


DEFAULT_SPEC = InputSpec()


def load_image(path: str | Path) -> Image.Image:
    """Open an image file, with a clear error for unreadable files."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise
    except Exception as e:  # PIL raises several unrelated types for bad files
        raise ValueError(f"cannot read image {path}: {e}") from e


def to_pil(image: Image.Image | NDArray[Any] | str | Path) -> Image.Image:
    if isinstance(image, str | Path):
        return load_image(image)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return Image.fromarray(arr)
    return image


def face_to_array(
    image: Image.Image | NDArray[Any] | str | Path, spec: InputSpec = DEFAULT_SPEC
) -> NDArray[np.float32]:
    """A face crop -> float32 array [C, H, W] in [0, 1] at the model's input size."""
    im = to_pil(image)
    im = im.convert("L" if spec.channels == 1 else "RGB")
    if im.size != (spec.width, spec.height):
        im = im.resize((spec.width, spec.height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    arr = np.asarray(im, dtype=np.float32) / 255.0
    out: NDArray[np.float32] = (
        arr[None].copy() if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
    )
    return out


def array_to_uint8(x: Any) -> NDArray[np.uint8]:
    """[C, H, W] (or [H, W]) in [0, 1]: a numpy array, or anything ``np.asarray`` reads (a CPU
    tensor) -> uint8 array (H, W) or (H, W, C), rounding like an image file (half to even)."""
    a = np.asarray(x, dtype=np.float32)
    u: NDArray[np.uint8] = np.round(np.clip(a, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    if u.ndim == 2:  # already (H, W)
        return u
    return u[0] if u.shape[0] == 1 else u.transpose(1, 2, 0)
