"""Training precision and memory format: bf16 autocast and channels_last, CPU and CUDA alike.

``amp = true`` in a config runs the *training* forward/backward under bf16 autocast on the
device the run uses. On CPUs with bf16 units (``avx512_bf16`` / ``amx_bf16`` in ``lscpu``) this is
the fastest mode measured by ``benchmarks/train_step.py`` (docs/TRAINING.md); on others it is
slower and should stay off. Inference and everything that touches entropy coding (likelihoods,
CDF tables, encode/decode) stays float32/float64: only the trainers enter this context, and the
codec trainer casts the likelihoods back to float32 before the rate term.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn


def train_autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for a training forward pass on ``device`` (CPU or CUDA), or a no-op."""
    if enabled and device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_memory_format(module: nn.Module, channels_last: bool) -> nn.Module:
    """Move a model's 4-D weights to channels_last (a no-op when off)."""
    return module.to(memory_format=torch.channels_last) if channels_last else module


def input_format(x: Tensor, channels_last: bool) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
