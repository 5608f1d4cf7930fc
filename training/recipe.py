"""Regularisers of the classifier recipe: random erasing, mixup/cutmix, weight EMA, flip TTA.

Batch-wise on the training device (the in-memory loader has no per-sample workers). All random
draws use the global torch RNG, which the checkpoint saves, so ``--resume`` stays exact.
Weight averaging is torch's own ``AveragedModel`` (with BN buffers averaged too).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def random_erase(x: Tensor, prob: float, area: tuple[float, float] = (0.02, 0.25)) -> Tensor:
    """Erase one random rectangle per image (probability ``prob``) with uniform noise.

    Zhong et al.'s random erasing: occlusions (hands, glasses, hair) are common in FER
    photos, and the classifier must not rely on a single facial region.
    """
    if prob <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    frac = torch.empty(b, device=dev).uniform_(*area)
    ratio = torch.exp(torch.empty(b, device=dev).uniform_(math.log(0.3), math.log(3.3)))
    eh = (torch.sqrt(frac * ratio) * h).clamp(1, h).long()
    ew = (torch.sqrt(frac / ratio) * w).clamp(1, w).long()
    top = (torch.rand(b, device=dev) * (h - eh + 1).float()).long()
    left = (torch.rand(b, device=dev) * (w - ew + 1).float()).long()
    rows = torch.arange(h, device=dev)[None, :, None]
    cols = torch.arange(w, device=dev)[None, None, :]
    box = (
        (rows >= top[:, None, None])
        & (rows < (top + eh)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + ew)[:, None, None])
    )
    box &= (torch.rand(b, device=dev) < prob)[:, None, None]
    noise = torch.rand_like(x)
    return torch.where(box[:, None], noise, x)


def mix_batch(
    x: Tensor, y: Tensor, kind: str, alpha: float, prob: float
) -> tuple[Tensor, Tensor, Tensor, float]:
    """Mixup or CutMix on a whole batch with probability ``prob``.

    Returns (inputs, targets a, targets b, weight of a); the loss is
    ``lam * CE(a) + (1 - lam) * CE(b)``. ``kind = "none"`` returns the batch unchanged.
    """
    if kind == "none" or alpha <= 0 or torch.rand(()) >= prob:
        return x, y, y, 1.0
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(x), device=x.device)
    if kind == "mixup":
        return lam * x + (1 - lam) * x[perm], y, y[perm], lam
    if kind != "cutmix":
        raise ValueError(f"mix must be none, mixup or cutmix, got {kind!r}")
    h, w = x.shape[-2:]
    ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    t, b = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, r = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    x = x.clone()
    x[..., t:b, left:r] = x[perm][..., t:b, left:r]
    lam = 1 - (b - t) * (r - left) / (h * w)  # the area actually pasted
    return x, y, y[perm], lam


def mixed_cross_entropy(
    logits: Tensor, ya: Tensor, yb: Tensor, lam: float, smoothing: float
) -> Tensor:
    loss = F.cross_entropy(logits, ya, label_smoothing=smoothing)
    if lam < 1.0:
        loss = lam * loss + (1 - lam) * F.cross_entropy(logits, yb, label_smoothing=smoothing)
    return loss


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights and BN statistics."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def ema_weights(ema_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The averaged model's own state dict out of an ``AveragedModel`` state dict."""
    p = "module."
    return {k[len(p) :]: v for k, v in ema_state.items() if k.startswith(p)}


@torch.no_grad()
def flip_tta_logits(model: nn.Module, x: Tensor, logits: Tensor | None = None) -> Tensor:
    """Log of the mean of the softmax on the face and its mirror (what the server averages).

    ``logits``: the model's output on ``x`` when the caller already has it (one forward saved).
    """
    if logits is None:
        logits = model(x)
    p = torch.softmax(logits.float(), 1) + torch.softmax(model(x.flip(-1)).float(), 1)
    return torch.log(p / 2)
