import pytest
import torch

from core.classifier import ClassifierConfig, FERClassifier
from training.widen import widen_classifier


def _trained_like(width: int) -> FERClassifier:
    """A classifier with non-default BN statistics, as a trained one has."""
    torch.manual_seed(0)
    m = FERClassifier(ClassifierConfig(width=width))
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_widened_classifier_computes_the_same_logits(mode: str) -> None:
    old = _trained_like(8)
    new = widen_classifier(old, 12)
    assert new.config.width == 12
    assert new.net.fc.in_features == 12 * 8
    x = torch.rand(6, 1, 48, 48)
    old.train(mode == "train")
    new.train(mode == "train")
    with torch.no_grad():
        torch.testing.assert_close(new(x), old(x), rtol=1e-4, atol=1e-4)


def test_new_channels_learn_from_the_first_step() -> None:
    new = widen_classifier(_trained_like(8), 12)
    x, y = torch.rand(4, 1, 48, 48), torch.tensor([0, 1, 2, 3])
    torch.nn.functional.cross_entropy(new.train()(x), y).backward()
    grad = new.net.fc.weight.grad
    assert grad is not None
    assert grad[:, 64:].abs().sum() > 0  # the fc columns reading the new channels


def test_narrowing_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot widen"):
        widen_classifier(_trained_like(8), 4)
