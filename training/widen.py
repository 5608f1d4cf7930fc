"""Function-preserving widening of a trained classifier (a warm start for more capacity).

Net2Net's idea (Chen et al., 2016) in its simplest form: a wider ResNet-18 whose leading
channels hold the trained weights and whose new channels start from the usual random init,
with every weight *from* a new channel *into* an old one set to zero. The old channels'
activations (and the logits) are then exactly those of the trained model, in train and eval
mode alike, while the new channels learn from the first step: their outgoing weights get a
gradient because their activations are not zero. Training the wider model from scratch would
throw away the ~110 epochs its narrower parent has already cost on a 2-core CPU.
"""

from __future__ import annotations

import dataclasses

import torch

from core.classifier import FERClassifier


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
