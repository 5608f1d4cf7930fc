"""The classifier's inference forms: the folded copy the server runs, and eval-mode prediction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.classifier import FERClassifier
from tests.conftest import TINY_CLASSIFIER


def trained_like(seed: int = 0) -> FERClassifier:
    """A tiny classifier whose BatchNorms hold statistics and affine terms far from the
    identity a fresh model has (folding an identity BatchNorm would prove nothing)."""
    torch.manual_seed(seed)
    model = FERClassifier(TINY_CLASSIFIER)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.3, 0.3)
    return model.eval()


def test_folded_is_the_same_function_without_batchnorm() -> None:
    model = trained_like()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = model.folded()
    x = torch.rand(6, 1, 48, 48)
    torch.testing.assert_close(folded.predict_proba(x), model.predict_proba(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(folded(x), model(x), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 20  # untouched
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not folded.training


def test_fold_refuses_a_model_in_training_mode_or_folded_already() -> None:
    with pytest.raises(ValueError, match="eval-mode"):
        trained_like().train().folded()
    with pytest.raises(ValueError, match="folded already"):
        trained_like().folded().folded()


def test_predict_proba_predicts_in_eval_mode_and_restores_training() -> None:
    model = trained_like()
    x = torch.rand(4, 1, 48, 48)
    expected = model.predict_proba(x)
    model.train()
    torch.testing.assert_close(model.predict_proba(x), expected)  # running stats, not batch's
    assert model.training and all(m.training for m in model.modules())
