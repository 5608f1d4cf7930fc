"""Training precision and memory format: bf16 autocast and channels_last, CPU and CUDA alike.

``amp = true`` in a config runs the *training* forward/backward under bf16 autocast on the
device the run uses. On CPUs with bf16 units (``avx512_bf16`` / ``amx_bf16`` in ``lscpu``) this is
the fastest mode measured by ``benchmarks/train_step.py`` (docs/TRAINING.md); on others it is
about 12x slower (measured: ResNet-18 step of 64 faces, one thread, 7.8 s vs 0.63 s in fp32 on an
AMD EPYC without them), so configs say ``amp = "auto"``: bf16 where the device has bf16 units,
fp32 elsewhere (``resolve_amp``). Inference and everything that touches entropy coding (likelihoods,
CDF tables, encode/decode) stays float32/float64: only the trainers enter this context, and the
codec trainer casts the likelihoods back to float32 before the rate term.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

#: /proc/cpuinfo flags of CPU bf16 units (x86: AVX512-BF16, AMX; Arm: FEAT_BF16).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU advertises bf16 arithmetic (False where it cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:  # no /proc (macOS, Windows): fp32 is the safe guess
        return False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return not BF16_CPU_FLAGS.isdisjoint(value.split())
    return False


def resolve_amp(setting: bool | str, device: torch.device) -> bool:
    """A config's ``amp`` (true / false / "auto") as the bool the run uses on ``device``.

    "auto" enables bf16 autocast only where it is fast: CUDA devices that support bf16 and
    CPUs with bf16 units. An explicit ``true`` is kept, with a warning on a CPU without them.
    """
    if setting == "auto":
        if device.type == "cuda":
            return bool(torch.cuda.is_bf16_supported())
        return device.type == "cpu" and cpu_has_bf16()
    if setting is True and device.type == "cpu" and not cpu_has_bf16():
        print(
            "warning: amp = true on a CPU without bf16 units: bf16 autocast is emulated and "
            'much slower than fp32 here (amp = "auto" picks fp32)',
            file=sys.stderr,
            flush=True,
        )
    return bool(setting)


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
