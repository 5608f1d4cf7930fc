"""Losses: known values on hand-made tensors, gradients, and the RD special case."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.classifier import ClassifierConfig, FERClassifier
from core.codec import CodecConfig, FaceHyperprior
from training.losses import PIXEL_SCALE, FERCompressionLoss, RateDistortionLoss


def _out(x_hat: torch.Tensor, p_y: float, p_z: float) -> dict:
    b = x_hat.shape[0]
    return {
        "x_hat": x_hat,
        "likelihoods": {"y": torch.full((b, 2, 3, 3), p_y), "z": torch.full((b, 2, 1, 1), p_z)},
    }


def test_rd_loss_known_values() -> None:
    x = torch.zeros(2, 1, 4, 4)
    x_hat = torch.full_like(x, 0.1)  # mse = 0.01 -> psnr 20 dB
    # y: 18 symbols at p=1/2 -> 18 bits; z: 2 symbols at p=1/4 -> 4 bits; per image 22 bits / 16 px
    parts = RateDistortionLoss(lmbda=0.01)(_out(x_hat, 0.5, 0.25), x)
    assert parts["bpp"].item() == pytest.approx(22 / 16)
    assert parts["mse"].item() == pytest.approx(0.01)
    assert parts["psnr"].item() == pytest.approx(20.0)
    assert parts["loss"].item() == pytest.approx(22 / 16 + 0.01 * PIXEL_SCALE * 0.01)


def test_fer_loss_known_values_and_terms() -> None:
    x = torch.zeros(2, 1, 4, 4)
    out = _out(torch.full_like(x, 0.1), 0.5, 0.25)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    ce = F.cross_entropy(logits, y).item()
    parts = FERCompressionLoss(lambda_r=2.0, lambda_d=3.0, lambda_c=0.5)(out, x, logits, y)
    assert parts["ce"].item() == pytest.approx(ce)
    assert parts["acc"].item() == pytest.approx(0.5)
    assert parts["loss"].item() == pytest.approx(2.0 * 22 / 16 + 3.0 * 0.01 + 0.5 * ce)
    with pytest.raises(ValueError, match="lambda_c"):
        FERCompressionLoss(lambda_c=1.0)(out, x)


def test_lambda_c_zero_reduces_to_rd() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 1, 8, 8)
    out = _out(torch.rand(3, 1, 8, 8), 0.3, 0.6)
    rd = RateDistortionLoss(0.0067)(out, x)
    fer = FERCompressionLoss.from_rd(0.0067, lambda_c=0.0)(
        out, x, torch.randn(3, 7), torch.tensor([0, 1, 2])
    )
    assert fer["loss"].item() == pytest.approx(rd["loss"].item(), rel=1e-6)
    assert FERCompressionLoss.from_rd(0.01, 1.0).lambda_d == pytest.approx(0.01 * 255**2)


@pytest.mark.parametrize("train_classifier", [False, True])
def test_gradients_reach_codec_and_joint_classifier(train_classifier: bool) -> None:
    torch.manual_seed(0)
    codec = FaceHyperprior(CodecConfig(N=8, M=8)).train()
    clf = FERClassifier(ClassifierConfig(width=8))
    clf.train(train_classifier).requires_grad_(train_classifier)
    x = torch.rand(2, 1, 48, 48)
    out = codec(x)
    loss = FERCompressionLoss.from_rd(0.01, lambda_c=1.0)
    parts = loss(out, x, clf(out["x_hat"]), torch.tensor([1, 2]))
    parts["loss"].backward()
    assert codec.g_a[0].weight.grad is not None and codec.g_a[0].weight.grad.abs().sum() > 0
    assert codec.g_s[-1].weight.grad.abs().sum() > 0
    fc = clf.net.fc.weight
    assert (fc.grad is not None and fc.grad.abs().sum() > 0) == train_classifier
    assert math.isfinite(parts["psnr"].item()) and parts["psnr"].requires_grad is False
