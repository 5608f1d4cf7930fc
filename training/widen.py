"""Function-preserving widening of a trained classifier or codec latent (a warm start for more
capacity).

Net2Net's idea (Chen et al., 2016) in its simplest form: a wider ResNet-18 whose leading
channels hold the trained weights and whose new channels start from the usual random init,
with every weight *from* a new channel *into* an old one set to zero. The old channels'
activations (and the logits) are then exactly those of the trained model, in train and eval
mode alike, while the new channels learn from the first step: their outgoing weights get a
gradient because their activations are not zero. Training the wider model from scratch would
throw away the ~110 epochs its narrower parent has already cost on a 2-core CPU.

The codec is widened in its latent only (M, the channels of y; issue 11: the align-4 codec's
3x3x96 latent looked capacity-bound at high rate). N and the GDN layers stay as they are, so
the rule is per layer rather than the classifier's one slicing rule: transposed convolutions
store (in, out, k, k), and h_s's last layer emits [scales | means], each M channels.
"""

from __future__ import annotations

import dataclasses

import torch

from core.classifier import FERClassifier
from core.codec import FaceHyperprior


@torch.no_grad()
def widen_classifier(old: FERClassifier, width: int) -> FERClassifier:
    """A ``width``-channel copy of ``old`` computing the same logits (docstring above)."""
    if width < old.config.width:
        raise ValueError(f"cannot widen a width-{old.config.width} classifier to {width}")
    new = FERClassifier(dataclasses.replace(old.config, width=width))
    old_state = old.state_dict()
    for key, t in new.state_dict().items():
        src = old_state[key]
        if src.dim() != t.dim() or any(a > b for a, b in zip(src.shape, t.shape, strict=True)):
            raise ValueError(f"{key}: {tuple(src.shape)} does not fit in {tuple(t.shape)}")
        if src.dim() == 0:  # BatchNorm's num_batches_tracked
            t.copy_(src)
            continue
        lead = tuple(slice(0, n) for n in src.shape)
        t[lead] = src.to(t.dtype)
        if t.dim() >= 2:  # conv / linear: old outputs must not read the new inputs
            t[: src.shape[0], src.shape[1] :] = 0
    return new.train(old.training)


#: Initial size of the new latent channels relative to g_a's random init (see below).
NEW_LATENT_SCALE = 0.1


@torch.no_grad()
def widen_codec_latent(old: FaceHyperprior, m: int) -> FaceHyperprior:
    """An ``m``-channel-latent copy of ``old`` with the same reconstructions and, for the old
    channels, the same entropy parameters: the new y channels start random and are read by
    nothing (zero weights into g_s, h_a and the old h_s outputs) until training moves them.
    They start small and priced as near-certain zeros, so the extra rate starts near 0."""
    m0 = old.config.M
    if m < m0:
        raise ValueError(f"cannot widen a {m0}-channel latent to {m}")
    new = FaceHyperprior(dataclasses.replace(old.config, M=m)).train(old.training)
    src, dst = old.state_dict(), new.state_dict()
    for key, t in dst.items():
        s = src[key]
        if s.shape == t.shape or key.startswith(("entropy_bottleneck.", "gaussian_conditional.")):
            # same shape, or CDF tables that depend on N and the scale table only, not on M:
            # load_state_dict below resizes those buffers
            dst[key] = s.clone()
        elif key in ("g_a.6.weight", "g_a.6.bias"):
            # new y channels start random but small (|y| ~ 0.1, rounded to 0), so they cost
            # almost no rate until g_s has learned to use them
            t[: s.shape[0]] = s
            t[s.shape[0] :] *= NEW_LATENT_SCALE
        elif key in ("h_s.0.bias", "h_s.2.bias"):
            t[: s.shape[0]] = s  # new hidden channels keep their random init
        elif key == "h_a.0.weight":  # conv (out, in): old outputs must not read new y
            t[:, : s.shape[1]] = s
            t[:, s.shape[1] :] = 0
        elif key in ("g_s.0.weight", "h_s.0.weight", "h_s.2.weight"):  # deconv (in, out)
            t[: s.shape[0], : s.shape[1]] = s
            t[s.shape[0] :, : s.shape[1]] = 0
        elif key in ("h_s.4.weight", "h_s.4.bias"):  # conv emitting [scales | means]
            # zeros first: old outputs read no new input, and the new channels get mean 0 and
            # scale at its lower bound, so a y of 0 is ~free; then the old rows in front
            t.zero_()
            inputs = tuple(slice(0, n) for n in s.shape[1:])
            for half in (0, 1):
                t[(slice(half * m, half * m + m0), *inputs)] = s[half * m0 : (half + 1) * m0]
        else:
            raise ValueError(f"{key}: no widening rule for {tuple(s.shape)} -> {tuple(t.shape)}")
    new.load_state_dict(dst)
    return new
