"""Face preprocessing shared by training, the edge client and the server (torch side).

One function turns any face crop (file, PIL image, numpy array, video frame) into the model's
input: grayscale, resized to 48x48 with antialiasing, float32 in [0, 1], shape [1, 48, 48].
Normalisation (mean/std) is not done here: the classifier does it, so the codec and the
classifier both see [0, 1] images. The pixels come from ``core.face_image`` (numpy only, what
the torch-free edge client uses); this module adds the torch tensors and re-exports the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch import Tensor

from core.face_image import (
    DEFAULT_SPEC,
    IMAGE_SUFFIXES,
    InputSpec,
    array_to_uint8,
    face_to_array,
    load_image,
    to_pil,
)

__all__ = [
    "DEFAULT_SPEC",
    "IMAGE_SUFFIXES",
    "InputSpec",
    "face_to_array",
    "face_to_tensor",
    "load_image",
    "tensor_to_uint8",
    "to_pil",
]


def face_to_tensor(
    image: Image.Image | NDArray[Any] | str | Path, spec: InputSpec = DEFAULT_SPEC
) -> Tensor:
    """A face crop -> float32 tensor [C, H, W] in [0, 1] at the model's input size."""
    return torch.from_numpy(face_to_array(image, spec))


def tensor_to_uint8(x: Tensor | NDArray[Any]) -> NDArray[Any]:
    """[C, H, W] in [0, 1] -> uint8 array (H, W) or (H, W, C), rounding like an image file."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().float().numpy()
    return array_to_uint8(np.asarray(x))
