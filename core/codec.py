"""Learned face codec: CompressAI's mean-scale hyperprior (mbt2018-mean) for small faces.

The network is CompressAI's ``MeanScaleHyperprior`` with the analysis/synthesis transforms
rebuilt for any number of input channels (FER2013 faces are 1-channel 48x48). Training uses the
usual CompressAI contract: ``forward(x) -> {"x_hat", "likelihoods": {"y", "z"}}``.

Entropy coding is made reproducible across machines (see ``docs/CODEC.md``): the decoder must
derive exactly the same Gaussian parameters as the encoder, or the range decoder silently
desynchronises. Float convolutions differ with thread count, batch size and device, so the
hyper-synthesis ``h_s`` is run in float64 on the CPU and its outputs are
snapped to coarse grids (means to 1/256, scales to scale-table indexes). A float64 result would
have to lie within ~1e-12 of a grid boundary for two machines to disagree. That inference path
is ``core/face_codec.py`` (``FaceCodec``); this module holds the network and its geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from compressai.layers import GDN
from compressai.models import MeanScaleHyperprior
from compressai.models.utils import conv, deconv
from torch import Tensor, nn

from core import bitstream

#: Latent means are snapped to multiples of this before entropy coding (both sides).
MEAN_GRID = 1.0 / 256.0
#: g_a downsamples by 2**4 (4 stride-2 convs): one latent cell of y per 16x16 pixels.
Y_STRIDE_LOG2 = 4
#: h_a downsamples y by 2**2 more (2 stride-2 convs, each rounding up: z = ceil(y / 4)).
Z_STRIDE_LOG2 = 2
#: Default pixel alignment, that of every codec shipped before issue 11: images are padded to a
#: multiple of 2**6 so that y and z come out whole (a 48x48 face becomes 64x64, y 4x4).
ALIGN_LOG2 = Y_STRIDE_LOG2 + Z_STRIDE_LOG2
#: "Latent alignment" (issue 11): pad pixels only to y's grid (48x48 -> y 3x3) and let the hyper
#: path round up in latent space; h_s's output is cropped back to y. The padded row/column of a
#: 64x64 face carried 47 % of the y bits.
LATENT_ALIGN_LOG2 = Y_STRIDE_LOG2
#: Largest |y_hat| a stream may decode to. Real faces stay within a few dozen; hostile bypass
#: codes can decode to +-2**31, which drives the synthesis transform to inf/NaN.
MAX_LATENT = 4096.0


@dataclass(frozen=True)
class CodecConfig:
    """Architecture of a face codec (stored in the artifact manifest)."""

    N: int = 64
    M: int = 96
    in_channels: int = 1
    arch: str = "mbt2018-mean"
    #: Pixels are padded to a multiple of 2**align_log2 (written in every header). 4..5 pad
    #: only to y's grid (latent alignment); 6 and up make y and z exact, as before issue 11.
    align_log2: int = ALIGN_LOG2

    def __post_init__(self) -> None:
        if not LATENT_ALIGN_LOG2 <= self.align_log2 <= bitstream.MAX_ALIGN_LOG2:
            raise ValueError(
                f"align_log2 must be in {LATENT_ALIGN_LOG2}..{bitstream.MAX_ALIGN_LOG2} "
                f"(g_a needs whole 16x16 blocks), got {self.align_log2}"
            )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "arch": self.arch,
            "N": self.N,
            "M": self.M,
            "in_channels": self.in_channels,
        }
        # Only when not the default, so manifests written before issue 11 mean what they say.
        if self.align_log2 != ALIGN_LOG2:
            d["align_log2"] = self.align_log2
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CodecConfig:
        if d.get("arch", "mbt2018-mean") != "mbt2018-mean":
            raise ValueError(f"unsupported codec architecture {d.get('arch')!r}")
        return cls(
            N=int(d["N"]),
            M=int(d["M"]),
            in_channels=int(d["in_channels"]),
            align_log2=int(d.get("align_log2", ALIGN_LOG2)),
        )


def latent_shapes(padded_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """((yH, yW), (zH, zW)) of a padded image (H, W multiples of 16).

    One function for forward, encode, decode and the entropy guard, so all agree on geometry.
    z rounds up (h_a's stride-2 convs pad), so y need not be a multiple of 4.
    """
    ph, pw = padded_size
    yh, yw = ph >> Y_STRIDE_LOG2, pw >> Y_STRIDE_LOG2
    zb = 1 << Z_STRIDE_LOG2
    return (yh, yw), (-(-yh // zb), -(-yw // zb))


class Synthesis(nn.Sequential):
    """The synthesis transform g_s: an ``nn.Sequential`` (same layers, same weight names) in
    which, under autocast (the server's bf16 ``inference_precision``), only the transposed
    convolutions before the last run in bf16: nearly all of its compute. The GDN layers and the
    last layer, which writes the image, stay float32: the classifier reading the face tips on
    near ties at sub-grey-level changes (rounding fp32 decoded faces to 8 bits changes ~0.4 % of
    served predictions), and a bf16 image is rounded to about one grey level. So kept, bf16
    synthesis stays within the 99.5 % agreement target with fp32 for every release pair
    (docs/MODELS.md, "Inference precision"). Without autocast it is exactly the plain
    ``nn.Sequential``."""

    def forward(self, x: Tensor) -> Tensor:
        last = len(self) - 1
        for i, layer in enumerate(self):
            if i < last and isinstance(layer, nn.ConvTranspose2d):
                x = layer(x)
            else:
                with torch.autocast(x.device.type, enabled=False):
                    x = layer(x.float())
        return x


class FaceHyperprior(MeanScaleHyperprior):
    """``MeanScaleHyperprior`` with a configurable number of image channels."""

    def __init__(self, config: CodecConfig) -> None:
        super().__init__(N=config.N, M=config.M)
        n, m, c = config.N, config.M, config.in_channels
        self.config = config
        self.g_a = nn.Sequential(
            conv(c, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m)
        )
        self.g_s = Synthesis(
            deconv(m, n),
            GDN(n, inverse=True),
            deconv(n, n),
            GDN(n, inverse=True),
            deconv(n, n),
            GDN(n, inverse=True),
            deconv(n, c),
        )

    def gaussian_params(self, z_hat: Tensor, y_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """(scales, means) of y: ``h_s(z_hat)`` cropped to y's grid.

        h_s upsamples by exactly 4; with latent alignment y is not a multiple of 4 (3x3 for a
        48x48 face), and the cells past it predict nothing. A no-op at the default alignment.
        """
        params = self.h_s(z_hat)[..., : y_size[0], : y_size[1]]
        scales, means = params.chunk(2, 1)
        return scales, means

    def forward(self, x: Tensor) -> dict[str, Any]:
        """Training/eval forward on images in [0, 1] of any size (padded internally).

        CompressAI's ``MeanScaleHyperprior.forward`` with this codec's padding and the h_s crop;
        at the default alignment the same computation.
        """
        h, w = x.shape[-2:]
        y = self.g_a(pad_to_alignment(x, self.config.align_log2))
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales_hat, means_hat = self.gaussian_params(z_hat, y.shape[-2:])
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales_hat, means=means_hat)
        x_hat = self.g_s(y_hat)[..., :h, :w]
        return {"x_hat": x_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    def compress(self, x: Tensor) -> dict[str, Any]:
        """CompressAI's API (float32, not deterministic across machines: use ``FaceCodec``)."""
        y = self.g_a(pad_to_alignment(x, self.config.align_log2))
        z = self.h_a(y)
        z_strings = self.entropy_bottleneck.compress(z)
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        scales_hat, means_hat = self.gaussian_params(z_hat, y.shape[-2:])
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means_hat)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:], "y_shape": y.shape[-2:]}

    def decompress(self, strings: list[Any], shape: Any, y_shape: Any = None) -> dict[str, Tensor]:
        """CompressAI's API; ``y_shape`` (from ``compress``) defaults to 4x the z grid."""
        zb = 1 << Z_STRIDE_LOG2
        y_size = tuple(y_shape) if y_shape is not None else (shape[0] * zb, shape[1] * zb)
        z_hat = self.entropy_bottleneck.decompress(strings[1], shape)
        scales_hat, means_hat = self.gaussian_params(z_hat, (y_size[0], y_size[1]))
        indexes = self.gaussian_conditional.build_indexes(scales_hat)
        y_hat = self.gaussian_conditional.decompress(strings[0], indexes, means=means_hat)
        return {"x_hat": self.g_s(y_hat).clamp_(0, 1)}


def pad_to_alignment(x: Tensor, align_log2: int = ALIGN_LOG2) -> Tensor:
    """Replicate-pad H and W up to a multiple of 2**align_log2.

    CompressAI pads with zeros; replicating the border costs fewer bits for faces, whose edges
    are rarely black, and the padding is cropped away after decoding either way.
    """
    a = 1 << align_log2
    h, w = x.shape[-2:]
    ph, pw = (a - h % a) % a, (a - w % a) % a
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def codec_id_from_sha256(sha256_hex: str) -> bytes:
    """The 4-byte codec identity written into every bitstream header."""
    return bytes.fromhex(sha256_hex)[:4]


def bits_per_pixel(likelihoods: dict[str, Tensor], num_pixels: int) -> Tensor:
    """Estimated rate of a forward pass, in bits per pixel (mean over the batch)."""
    batch = next(iter(likelihoods.values())).shape[0]
    total = torch.stack([torch.log(v).sum() for v in likelihoods.values()]).sum()
    return -total / (math.log(2) * num_pixels * batch)
