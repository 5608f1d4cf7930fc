"""The variation the edge client adds to a face that FER2013's crops do not have.

FER2013 faces were cropped and normalised by its authors; the client's faces come from photos
and video frames through its own detector (``client/faces.py``): boxes that sit tighter or off
centre, exposure, contrast and tone curves of whatever camera took them (the client does no
lighting normalisation: the codec sees the pixels as they are), and sharpness: a face
downscaled from a photo keeps detail that FER2013's upscaled crops lost (mean absolute
Laplacian of the demo photo's crops ~48 against 28.5 for PublicTest, above its 90th percentile,
39), which costs the codec bytes (`python -m benchmarks.demo_predictions`: ~310 B/face for the
default pair against 236 B on PublicTest). Issue 11 measured the joint
pair falling further behind the baseline on detector-cropped photos than on FER2013.

One family of perturbations serves two purposes:

- ``perturb_faces``: a seeded, reproducible copy of an evaluation split with every face
  perturbed once (``fercomp eval --perturb client``), so a pair's accuracy on client-like faces
  is measured next to its PublicTest figure on the same faces;
- ``camera``: sharpness and lighting as a training augmentation (``aug_client = true``); the
  framing half is the trainers' existing shift/zoom augmentation.

A 48x48 crop has no context outside the box, so framing can only be varied inwards (a tighter
box, shifted); wider boxes are not simulated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from training.batching import affine_resample


@dataclass(frozen=True)
class ClientVariation:
    """Ranges drawn uniformly per face (gamma log-uniformly)."""

    brightness: tuple[float, float] = (0.6, 1.4)  # multiplies the pixel values
    contrast: tuple[float, float] = (0.7, 1.3)  # scales the deviation from the face's mean
    gamma: tuple[float, float] = (0.7, 1.4)  # tone curve x ** gamma
    # unsharp-mask amount (3x3 binomial blur): 1.0 takes PublicTest's mean absolute Laplacian
    # from 28.5 to 47.7, the demo photo's crops measure ~48
    sharpen: tuple[float, float] = (0.0, 1.0)
    zoom: tuple[float, float] = (1.0, 1.25)  # > 1: the box is tighter than FER2013's
    shift: float = 0.08  # box centre offset, fraction of the side

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


CLIENT = ClientVariation()


def _uniform(
    n: int, lo: float, hi: float, gen: torch.Generator | None, dev: torch.device
) -> Tensor:
    return torch.rand(n, generator=gen, device=dev) * (hi - lo) + lo


def lighting(x: Tensor, v: ClientVariation = CLIENT, gen: torch.Generator | None = None) -> Tensor:
    """Per-image brightness, contrast and gamma on a batch [B, C, H, W] in [0, 1]."""
    b, dev = x.shape[0], x.device
    shape = (b, 1, 1, 1)
    bright = _uniform(b, *v.brightness, gen, dev).view(shape)
    contrast = _uniform(b, *v.contrast, gen, dev).view(shape)
    log_g = _uniform(b, math.log(v.gamma[0]), math.log(v.gamma[1]), gen, dev)
    gamma = torch.exp(log_g).view(shape)
    y = x.float().clamp(0, 1) ** gamma
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = ((y - mean) * contrast + mean) * bright
    return y.clamp(0, 1).to(x.dtype)


def sharpness(x: Tensor, v: ClientVariation = CLIENT, gen: torch.Generator | None = None) -> Tensor:
    """Per-image unsharp mask ``x + a * (x - blur(x))`` on a batch [B, C, H, W] in [0, 1]."""
    b, c, dev = x.shape[0], x.shape[1], x.device
    amount = _uniform(b, *v.sharpen, gen, dev).view(b, 1, 1, 1)
    k = torch.tensor([1.0, 2.0, 1.0], device=dev)
    k = (k[:, None] * k[None, :] / 16).expand(c, 1, 3, 3)
    xf = x.float()
    blur = F.conv2d(F.pad(xf, (1, 1, 1, 1), mode="replicate"), k, groups=c)
    return (xf + amount * (xf - blur)).clamp(0, 1).to(x.dtype)


def camera(x: Tensor, v: ClientVariation = CLIENT, gen: torch.Generator | None = None) -> Tensor:
    """Sharpness, then lighting: what the camera and the downscaling change."""
    return lighting(sharpness(x, v, gen), v, gen)


def framing(x: Tensor, v: ClientVariation = CLIENT, gen: torch.Generator | None = None) -> Tensor:
    """A tighter, shifted box, resampled back to the face size (bilinear, border replicated)."""
    b, dev = x.shape[0], x.device
    zoom = _uniform(b, *v.zoom, gen, dev)
    shift = (torch.rand(b, 2, generator=gen, device=dev) * 2 - 1) * (2 * v.shift)
    # Its own draws in its own order (the seeded perturbed evals depend on them), the same
    # resampling as the training augmentation.
    return affine_resample(x.float(), torch.zeros(b, device=dev), zoom, shift)


def perturb_faces(faces: np.ndarray, seed: int = 0, v: ClientVariation = CLIENT) -> np.ndarray:
    """uint8 faces [N, H, W] -> the same faces as the client might deliver them (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(faces)).float().unsqueeze(1) / 255.0
    out = camera(framing(x, v, gen), v, gen)
    return (out.squeeze(1) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
