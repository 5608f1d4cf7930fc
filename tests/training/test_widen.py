import pytest
import torch

from core.classifier import ClassifierConfig, FERClassifier
from core.codec import CodecConfig, FaceHyperprior
from training.widen import widen_classifier, widen_codec_latent


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


def _codec(m: int) -> FaceHyperprior:
    torch.manual_seed(1)
    codec = FaceHyperprior(CodecConfig(N=16, M=m, align_log2=4))
    for p in codec.parameters():  # away from the init so a copy slip would show
        p.data.add_(0.01 * torch.randn_like(p))
        if p.dim() == 4:  # large activations as in a trained codec (a fresh one codes ~0 bits)
            p.data.mul_(10)
    return codec.eval()


def test_widened_codec_latent_reconstructs_the_same_and_prices_old_channels_the_same() -> None:
    old = _codec(12)
    new = widen_codec_latent(old, 20)
    assert new.config.M == 20 and new.config.N == 16 and new.config.align_log2 == 4
    x = torch.rand(3, 1, 48, 48)
    a, b = old(x), new(x)
    torch.testing.assert_close(b["x_hat"], a["x_hat"])
    torch.testing.assert_close(b["likelihoods"]["z"], a["likelihoods"]["z"])
    torch.testing.assert_close(b["likelihoods"]["y"][:, :12], a["likelihoods"]["y"])
    # the new channels are coded (they cost rate) and start random, not dead
    assert b["likelihoods"]["y"].shape[1] == 20
    assert new.g_a[6].weight[12:].abs().sum() > 0
    # ... but small and priced as near-certain zeros: they add little rate to start with
    new_y = b["likelihoods"]["y"][:, 12:]
    assert -new_y.log2().sum() / new_y.numel() < 0.05  # bits per new latent value


def test_widened_codec_latent_trains_its_new_channels() -> None:
    new = widen_codec_latent(_codec(12), 20).train()
    out = new(torch.rand(4, 1, 48, 48))
    loss = ((out["x_hat"] - 0.5) ** 2).mean() - out["likelihoods"]["y"].log().mean()
    loss.backward()
    assert new.g_s[0].weight.grad[12:].abs().sum() > 0  # read by g_s from the first step
    assert new.g_a[6].weight.grad[12:].abs().sum() > 0


def test_codec_latent_cannot_narrow() -> None:
    with pytest.raises(ValueError, match="cannot widen"):
        widen_codec_latent(_codec(12), 8)
