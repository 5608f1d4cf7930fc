"""Hold a finetune / joint run at a target rate by adapting ``lambda_r`` as it trains.

The FER loss trades rate against distortion and the CE, so a fixed ``lambda_r`` lands the codec
wherever that trade settles: on the <= 80 B point, ``lambda_r`` 3.0 drifted up to 82.7 B/face and
4.25 fell to 74.4 B (docs/experiments/LOG.md). A target in bytes is what a user of a bandwidth
budget has, so ``target_bpp`` makes ``lambda_r`` a Lagrange multiplier updated by dual ascent on the
measured rate: ``log lambda_r += gain * (bpp - target) / target`` per step. Multiplicative, so
it never turns negative and reacts at the same relative speed at every scale.

``target_bpp`` is the model's rate estimate with rounded latents (the entropy models' ``-log2``
likelihoods per pixel, as validation reports ``val_bpp``), measured by the trainer on each batch
in eval mode; it is not the container: the bitstream adds the v1 header and the range coder's
flush bytes (~21 B/face at 75 B on 48x48 faces).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# Keep the multiplier in a sane band: a diverging controller should show up as a run that
# misses its rate, not as NaNs.
LAMBDA_R_MIN, LAMBDA_R_MAX = 1e-2, 1e3


class RateController(nn.Module):
    """``lambda_r`` as a checkpointed buffer (a resumed run continues from where it was)."""

    def __init__(self, lambda_r: float, target_bpp: float, gain: float = 0.01) -> None:
        super().__init__()
        if lambda_r <= 0:
            raise ValueError(f"the rate controller needs lambda_r > 0 to start, got {lambda_r}")
        if target_bpp <= 0:
            raise ValueError(f"target_bpp must be > 0, got {target_bpp}")
        if gain <= 0:
            raise ValueError(f"rate_gain must be > 0, got {gain}")
        self.target_bpp = float(target_bpp)
        self.gain = float(gain)
        self.register_buffer("log_lambda_r", torch.tensor(math.log(lambda_r), dtype=torch.float64))

    @property
    def lambda_r(self) -> float:
        return float(self.log_lambda_r.exp())

    @torch.no_grad()
    def update(self, bpp: Tensor | float) -> float:
        """One dual-ascent step on the rate just measured; returns the new ``lambda_r``."""
        error = (float(bpp) - self.target_bpp) / self.target_bpp
        lo, hi = math.log(LAMBDA_R_MIN), math.log(LAMBDA_R_MAX)
        self.log_lambda_r.add_(self.gain * error).clamp_(lo, hi)
        return self.lambda_r


def rate_constrained_score(acc: float, bpp: float, target_bpp: float) -> float:
    """Select the most accurate epoch among those at or under the target rate.

    Over the target, each 1 % of excess rate costs 10 accuracy points (0.1 % costs 1 pt): a
    controlled run hovers around its target, so a hair over is close to a tie while a clear
    miss never beats an epoch that held the rate; among epochs all above it the closest wins."""
    excess = max(0.0, bpp / target_bpp - 1.0)
    return acc - 10.0 * excess
