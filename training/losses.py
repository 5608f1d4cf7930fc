"""Training losses for the face codec. Each returns a dict of its parts (CompressAI style).

Scales (the same everywhere in fercomp):
- images ``x`` and reconstructions ``x_hat`` are in [0, 1], so ``mse`` is the mean squared error
  on [0, 1] pixels (multiply by 255**2 for grey levels squared);
- ``bpp`` is the estimated rate in bits per pixel from the entropy models' likelihoods, averaged
  over the batch (``core.codec.bits_per_pixel``);
- ``psnr`` is ``10*log10(1/mse)`` of the batch MSE, in dB (a metric; no gradient).

``RateDistortionLoss(lmbda)`` is the loss CompressAI trains its model zoo with
(``examples/train.py``): ``bpp + lmbda * 255**2 * mse``. Its quality ladder for mbt2018-mean
uses lmbda in {0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800}.

``FERCompressionLoss(lambda_r, lambda_d, lambda_c)`` is the task-aware loss of arXiv 2509.17262:
``lambda_r * bpp + lambda_d * mse + lambda_c * CE(classifier(x_hat), y)``. With
``lambda_r = 1``, ``lambda_d = lmbda * 255**2`` and ``lambda_c = 0`` it equals the RD loss above
exactly (``FERCompressionLoss.from_rd(lmbda, lambda_c)`` builds it that way).

Knowledge distillation (optional, ``kd_weight > 0``; off by default so the paper's loss is the
default): ``+ kd_weight * T**2 * KL(softmax(t/T) || softmax(s/T))`` (Hinton et al. 2015), where
``t`` are a frozen teacher's logits on the *uncompressed* face and ``s`` the trained classifier's
logits on the decoded one. The soft targets say how a good classifier reads the original face
(which wrong classes are close), more than the one-hot label does; ``T**2`` keeps the gradient
scale independent of ``T``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.codec import bits_per_pixel

#: CompressAI's distortion scale: MSE on [0, 1] images times 255**2 is MSE in grey levels.
PIXEL_SCALE = 255.0**2


def _rate_distortion(out: dict[str, Any], x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    h, w = x.shape[-2:]
    bpp = bits_per_pixel(out["likelihoods"], h * w)
    mse = F.mse_loss(out["x_hat"], x)
    psnr = 10.0 * torch.log10(1.0 / mse.detach().clamp_min(1e-10))
    return bpp, mse, psnr


def distillation_kl(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T**2 * KL(softmax(teacher/T) || softmax(student/T))``, mean over the batch."""
    t = float(temperature)
    log_s = F.log_softmax(student.float() / t, dim=1)
    log_t = F.log_softmax(teacher.detach().float() / t, dim=1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * (t * t)


class RateDistortionLoss(nn.Module):
    """``bpp + lmbda * 255**2 * mse``: CompressAI's zoo training loss."""

    def __init__(self, lmbda: float = 0.0067) -> None:
        super().__init__()
        self.lmbda = float(lmbda)

    def forward(self, out: dict[str, Any], x: Tensor) -> dict[str, Tensor]:
        bpp, mse, psnr = _rate_distortion(out, x)
        loss = bpp + self.lmbda * PIXEL_SCALE * mse
        return {"loss": loss, "bpp": bpp, "mse": mse, "psnr": psnr}


class FERCompressionLoss(nn.Module):
    """``lambda_r * bpp + lambda_d * mse + lambda_c * CE(logits(x_hat), y)`` (arXiv 2509.17262).

    ``logits`` are the classifier's outputs on the reconstruction ``x_hat`` and must keep their
    graph to the codec so the CE term shapes what the codec spends its bits on. With
    ``lambda_c == 0`` the classifier is not needed and ``logits`` may be omitted.
    """

    def __init__(
        self,
        lambda_r: float = 1.0,
        lambda_d: float = 0.0067 * PIXEL_SCALE,
        lambda_c: float = 1.0,
        label_smoothing: float = 0.0,
        kd_weight: float = 0.0,
        kd_temperature: float = 4.0,
    ) -> None:
        super().__init__()
        self.lambda_r = float(lambda_r)
        self.lambda_d = float(lambda_d)
        self.lambda_c = float(lambda_c)
        self.label_smoothing = float(label_smoothing)
        self.kd_weight = float(kd_weight)
        self.kd_temperature = float(kd_temperature)
        if self.kd_temperature <= 0:
            raise ValueError(f"kd_temperature must be > 0, got {kd_temperature}")

    @classmethod
    def from_rd(cls, lmbda: float, lambda_c: float, lambda_r: float = 1.0) -> FERCompressionLoss:
        """The RD loss ``bpp + lmbda*255**2*mse`` plus ``lambda_c * CE``."""
        return cls(lambda_r=lambda_r, lambda_d=lmbda * PIXEL_SCALE, lambda_c=lambda_c)

    def forward(
        self,
        out: dict[str, Any],
        x: Tensor,
        logits: Tensor | None = None,
        y: Tensor | None = None,
        teacher_logits: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``teacher_logits``: a frozen teacher on the uncompressed ``x`` (needed when
        ``kd_weight > 0``; when given, the ``kd`` part is reported either way)."""
        bpp, mse, psnr = _rate_distortion(out, x)
        loss = self.lambda_r * bpp + self.lambda_d * mse
        parts = {"bpp": bpp, "mse": mse, "psnr": psnr}
        if logits is not None and y is not None:
            ce = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
            parts["ce"] = ce
            parts["acc"] = (logits.detach().argmax(1) == y).float().mean()
            if self.lambda_c != 0.0:
                loss = loss + self.lambda_c * ce
        elif self.lambda_c != 0.0:
            raise ValueError("lambda_c > 0 needs the classifier's logits and the labels")
        if logits is not None and teacher_logits is not None:
            kd = distillation_kl(logits, teacher_logits, self.kd_temperature)
            parts["kd"] = kd
            if self.kd_weight != 0.0:  # kd_weight = 0: the loss is the paper's, bit for bit
                loss = loss + self.kd_weight * kd
        elif self.kd_weight != 0.0:
            raise ValueError("kd_weight > 0 needs the student's and the teacher's logits")
        parts["loss"] = loss
        return parts


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of an MSE on [0, 1] images."""
    return 10.0 * math.log10(1.0 / max(mse, 1e-10))
