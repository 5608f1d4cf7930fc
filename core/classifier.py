"""FER classifier: torchvision's ResNet-18 adapted to 48x48 grayscale faces.

Design of the input stem (see docs/MODELS.md): ImageNet's 7x7/stride-2 conv plus max-pool
shrinks a 48x48 face to 12x12 before the first residual stage, throwing away the small muscle
movements FER depends on. We replace it by a 3x3/stride-1 conv and keep the max-pool, so
layer1 sees 24x24 maps (final 3x3). That is ~4x the compute of the ImageNet stem and ~1/4 of a
CIFAR-style stem, a good trade-off for CPU serving. Width is configurable: ``width=64`` is the
original ResNet-18; the bundled CPU-sized model uses ``width=32`` (2.8 M parameters).

The model takes images in [0, 1] and normalises internally, so a decoded ``x_hat`` can be fed
straight in (this is what makes joint codec/classifier training a plain composition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, ResNet

# Re-exported: the labels live in a torch-free module so the server's store and metrics can
# use them without importing torch.
from core.labels import EXPRESSIONS as EXPRESSIONS
from core.labels import check_label as check_label
from core.labels import parse_label as parse_label

#: Mean / std of FER2013 Training pixels in [0, 1] (grayscale).
FER_MEAN = 0.5077
FER_STD = 0.2550


@dataclass(frozen=True)
class ClassifierConfig:
    arch: str = "resnet18"
    in_channels: int = 1
    num_classes: int = len(EXPRESSIONS)
    width: int = 32
    stem: str = "small"  # "small" (3x3 s1 + maxpool) | "imagenet" (7x7 s2 + maxpool)

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "width": self.width,
            "stem": self.stem,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierConfig:
        if d.get("arch", "resnet18") != "resnet18":
            raise ValueError(f"unsupported classifier architecture {d.get('arch')!r}")
        if d.get("stem", "small") not in ("small", "imagenet"):
            raise ValueError(f"unsupported stem {d.get('stem')!r}")
        return cls(
            in_channels=int(d["in_channels"]),
            num_classes=int(d["num_classes"]),
            width=int(d["width"]),
            stem=str(d.get("stem", "small")),
        )


class _WideResNet(ResNet):
    """torchvision ResNet whose stage widths are ``width * (1, 2, 4, 8)``."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        if width != 64:
            # Rebuild the stages at the requested width with torchvision's own builder.
            self.inplanes = width
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.layer1 = self._make_layer(BasicBlock, width, 2)
            self.layer2 = self._make_layer(BasicBlock, width * 2, 2, stride=2)
            self.layer3 = self._make_layer(BasicBlock, width * 4, 2, stride=2)
            self.layer4 = self._make_layer(BasicBlock, width * 8, 2, stride=2)
            self.fc = nn.Linear(width * 8, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class FERClassifier(nn.Module):
    """ResNet-18 for faces; ``forward`` takes [B, C, H, W] in [0, 1], returns logits."""

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ClassifierConfig()
        net = _WideResNet(config.width, config.num_classes)
        if config.stem == "small":
            net.conv1 = nn.Conv2d(config.in_channels, config.width, 3, 1, 1, bias=False)
        else:
            net.conv1 = nn.Conv2d(config.in_channels, config.width, 7, 2, 3, bias=False)
        self.net = net
        self.register_buffer("mean", torch.full((1, config.in_channels, 1, 1), FER_MEAN))
        self.register_buffer("std", torch.full((1, config.in_channels, 1, 1), FER_STD))

    mean: Tensor
    std: Tensor

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net((x - self.mean) / self.std)
        return out

    def inference_logits(self, x: Tensor) -> Tensor:
        """``forward`` for serving, with its two ends in float32 even under autocast: the stem,
        which reads the face (bf16 would round normalised pixels to 2^-8 of their value, about
        half a grey level), and the head (pooling + fc: bf16 logits are 2^-8 apart, enough to
        swap two close classes). The residual stages, nearly all the compute, follow the
        autocast in force (the server's bf16 ``inference_precision``). Without autocast it is
        exactly ``forward`` (torchvision's ResNet forward, step by step); training keeps
        ``forward``, whose autocast covers the whole network."""
        net = self.net
        with torch.autocast(x.device.type, enabled=False):
            z = (x.float() - self.mean) / self.std
            z = net.maxpool(net.relu(net.bn1(net.conv1(z))))
        z = net.layer4(net.layer3(net.layer2(net.layer1(z))))
        with torch.autocast(x.device.type, enabled=False):
            out: Tensor = net.fc(torch.flatten(net.avgpool(z.float()), 1))
        return out

    def autocast_layers(self) -> list[nn.Module]:
        """The layers ``inference_logits`` runs under the caller's autocast (the residual
        stages); the stem and the head run float32 whatever the autocast. A server at bf16
        may keep these layers' weights in bf16 (``service.precision.prepare_model``): autocast
        would cast them on every call, to the same values."""
        net = self.net
        return [net.layer1, net.layer2, net.layer3, net.layer4]

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """float32 class probabilities (``inference_logits``, eval mode)."""
        if not self.training:  # as served: switching walks every module, twice, per batch
            return torch.softmax(self.inference_logits(x), dim=1)
        self.eval()
        try:
            return torch.softmax(self.inference_logits(x), dim=1)
        finally:
            self.train()

    def folded(self) -> FERClassifier:
        """An eval copy for inference whose BatchNorms are folded into the convolutions before
        them (``torch.nn.utils.fusion.fuse_conv_bn_eval``): the same function up to float
        rounding, one operator fewer per convolution, and no BatchNorm running on bf16
        activations. ``self`` is left as it is; the copy cannot be trained (no BatchNorm left
        to update) nor folded again."""
        if self.training:
            raise ValueError("fold an eval-mode model: training BatchNorm has batch statistics")
        if not isinstance(self.net.bn1, nn.BatchNorm2d):
            raise ValueError("this classifier is folded already")
        out = FERClassifier(self.config).to(self.mean.device)
        out.load_state_dict(self.state_dict())
        out.eval()
        net = out.net
        net.conv1 = fuse_conv_bn_eval(net.conv1, net.bn1)
        net.bn1 = nn.Identity()  # type: ignore[assignment]  # torchvision types it BatchNorm2d
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            for block in stage:
                assert isinstance(block, BasicBlock)
                block.conv1, block.bn1 = fuse_conv_bn_eval(block.conv1, block.bn1), nn.Identity()
                block.conv2, block.bn2 = fuse_conv_bn_eval(block.conv2, block.bn2), nn.Identity()
                if block.downsample is not None:
                    conv, bn = block.downsample
                    block.downsample = nn.Sequential(fuse_conv_bn_eval(conv, bn))
        return out
