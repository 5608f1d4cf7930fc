"""Distortion and classification metrics for the rate/accuracy evaluation.

PSNR: per face on uint8 images (decoded output rounded as an image file would be), in dB with
peak 255, then averaged over faces. A face reconstructed exactly would have infinite PSNR; each
face's value is capped at ``PSNR_CAP_DB`` so one such face cannot make the mean infinite.

MS-SSIM at 48x48 (the choice documented here and in the generated RESULTS.md): the standard
5-scale MS-SSIM (Wang et al. 2003, weights 0.0448/0.2856/0.3001/0.2363/0.1333) with its usual
11-tap Gaussian window needs images larger than 160 px, because the window must fit the
coarsest of the four 2x downsamplings. The alternatives are to upsample the faces to 192 px
(which scores interpolated pixels that were never coded, inflating every codec alike) or to
drop scales (which changes the metric's definition and weights). We keep all five scales and
their weights at the native 48x48 resolution and shrink the window to 3 taps (Gaussian with
sigma 1.5 truncated to 3x3): the scales are 48, 24, 12, 6 and 3 px, and the window still fits
the coarsest one. A 3-tap window on a 48 px face covers about the same fraction of the face as
the 11-tap window does on the ~176 px images MS-SSIM was designed for. Computed with
``pytorch_msssim.ms_ssim(x, y, data_range=255, win_size=3)`` per face, then averaged. Values
are therefore comparable between codecs in this project but not with MS-SSIM numbers
published for large images.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

PSNR_CAP_DB = 100.0
MSSSIM_WIN = 3
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def psnr_per_face(original: Tensor, decoded: Tensor) -> Tensor:
    """PSNR (dB) per face of two uint8-valued batches [B, C, H, W] (any float dtype)."""
    mse = (original.double() - decoded.double()).pow(2).flatten(1).mean(1)
    floor = 255.0**2 / 10 ** (PSNR_CAP_DB / 10)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(floor))


def ms_ssim_per_face(original: Tensor, decoded: Tensor) -> Tensor:
    """MS-SSIM per face of two uint8-valued batches [B, C, 48, 48] (see module docstring)."""
    from pytorch_msssim import ms_ssim

    return ms_ssim(
        original.float(),
        decoded.float(),
        data_range=255.0,
        size_average=False,
        win_size=MSSSIM_WIN,
        weights=list(MSSSIM_WEIGHTS),
    )


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    return float((labels == preds).mean()) if len(labels) else float("nan")


def macro_f1(labels: np.ndarray, preds: np.ndarray) -> float:
    """Unweighted mean of per-class F1 over the classes present in labels or predictions
    (scikit-learn's ``f1_score(average="macro")``), so rare classes like *disgust* count fully."""
    classes = np.union1d(labels, preds)
    if classes.size == 0:
        return float("nan")
    f1s = []
    for c in classes:
        tp = int(((preds == c) & (labels == c)).sum())
        fp = int(((preds == c) & (labels != c)).sum())
        fn = int(((preds != c) & (labels == c)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(f1s))


def metric_notes() -> dict[str, str]:
    """Definitions stored in the eval JSON next to the numbers."""
    return {
        "bytes_per_face": "mean size of the whole payload per face: learned codecs = complete "
        "v1 container incl. its 16-byte header; JPEG/WebP/AVIF = complete file as Pillow "
        "writes it, incl. the format's own headers",
        "bpp": "8 * bytes_per_face / (H * W)",
        "psnr": f"mean per-face PSNR in dB on uint8 images (peak 255), capped at {PSNR_CAP_DB}",
        "ms_ssim": "mean per-face MS-SSIM at native 48x48: 5 standard scales/weights, "
        f"{MSSSIM_WIN}x{MSSSIM_WIN} Gaussian window (sigma 1.5), data_range 255",
        "accuracy": "top-1 accuracy of each classifier on the decoded faces",
        "macro_f1": "unweighted mean of per-class F1",
    }
