"""Inference precision of the served networks: bf16 where the hardware computes it natively.

Only the synthesis transform g_s and the classifier change precision: the codec's entropy path
(hyper-synthesis h_s in float64 on the CPU, rANS) is untouched, so the decoded latents stay
bit-exact whatever this says. ``bf16`` runs both networks under ``torch.autocast`` on
channels_last inputs: their convolutions compute in bfloat16 (float32 accumulation), except
where the face itself is written or read, which stays float32 (g_s's GDNs and last layer,
``core.codec.Synthesis``; the classifier's stem and head, ``FERClassifier.inference_logits``).
Outputs come back as float32. Predictions as served agree with fp32 on >= 99.5 % of PublicTest
for every release pair (``benchmarks/precision_agreement.py``, docs/MODELS.md).

``auto`` picks bf16 only where it is fast: a CPU with bf16 instructions (AVX512-BF16 or AMX,
asked of torch, then of /proc/cpuinfo, which also names Arm's), a GPU with native bf16 (Ampere
or newer). Elsewhere bf16 is emulated, slower than fp32, so ``auto`` means fp32 there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from core.classifier import FERClassifier

log = logging.getLogger("fercomp.service.precision")

PrecisionSetting = Literal["auto", "bf16", "fp32"]
Precision = Literal["bf16", "fp32"]
PRECISION_SETTINGS: tuple[PrecisionSetting, ...] = ("auto", "bf16", "fp32")

#: /proc/cpuinfo flags of bf16 arithmetic: x86 AVX512-BF16 dot products and AMX bf16 tiles,
#: Arm FEAT_BF16 (the same set as training's ``amp = "auto"``, training/precision.py).
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
#: torch's own CPU capability queries (cpuinfo library) for the same units.
_TORCH_CPU_QUERIES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU flags /proc/cpuinfo lists (empty where there is no such file)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_has_native_bf16(flags: Callable[[], frozenset[str]] | None = None) -> bool:
    """True when the CPU has bf16 arithmetic units: torch's capability query says so, or
    (torch too old to ask, or a CPU its cpuinfo does not know) the CPU flags (``flags()``,
    default /proc/cpuinfo) list one of ``CPU_BF16_FLAGS``. oneDNN's bf16 kernels on a CPU
    without them emulate bf16 with fp32 instructions plus conversions: slower than fp32, so
    this is the test ``auto`` uses."""
    for name in _TORCH_CPU_QUERIES:
        query = getattr(torch.cpu, name, None)
        if callable(query):
            try:
                if query():
                    return True
            except Exception:  # a capability query must never stop the server
                continue
    return bool((flags or cpuinfo_flags)() & CPU_BF16_FLAGS)


def cuda_has_native_bf16() -> bool:
    """True when the current CUDA device computes bf16 natively (not emulated)."""
    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch before the including_emulation argument: it meant native then
        return bool(torch.cuda.is_bf16_supported())


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` (``cpu`` or ``cuda[:n]``) runs bf16 natively."""
    kind = torch.device(device).type
    if kind == "cpu":
        return cpu_has_native_bf16()
    if kind == "cuda":
        return cuda_has_native_bf16()
    return False


def resolve_precision(setting: PrecisionSetting, device: str | torch.device) -> Precision:
    """``auto`` -> bf16 where ``device`` has native bf16, else fp32; a forced value as given
    (forced bf16 without native units is emulated and slow: logged as a warning)."""
    if setting not in PRECISION_SETTINGS:
        raise ValueError(
            f"inference precision must be one of {PRECISION_SETTINGS}, not {setting!r}"
        )
    if setting == "fp32":
        return "fp32"
    native = native_bf16(device)
    if setting == "bf16":
        if not native:
            log.warning(
                "inference_precision=bf16 on %s without native bf16 units: emulated, slower "
                "than fp32", torch.device(device).type,
            )  # fmt: skip
        return "bf16"
    return "bf16" if native else "fp32"


@contextlib.contextmanager
def inference_mode(precision: Precision, device: str | torch.device) -> Iterator[None]:
    """bf16 autocast on ``device`` for ``bf16`` (nothing for ``fp32``), without gradients."""
    with torch.no_grad():
        if precision == "bf16":
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                yield
        else:
            yield


def prepare_input(x: Tensor, precision: Precision) -> Tensor:
    """A 4-D network input in the layout ``precision`` runs fastest on: channels_last for bf16
    (oneDNN's and cuDNN's bf16 convolutions are NHWC kernels), as it is for fp32."""
    if precision == "bf16" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


_channels_last: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_channels_last_lock = threading.Lock()


def prepare_model(module: nn.Module, precision: Precision) -> None:
    """For bf16, put ``module``'s 4-D weights in channels_last, and the convolutions of a
    classifier's autocast layers (``FERClassifier.autocast_layers``) in bf16, once per module
    (a no-op for fp32 and after the first call).

    Channels_last: a convolution runs NHWC kernels when its input *or* its weight is
    channels_last, and a 1-channel face's layout is ambiguous (its NCHW strides are also
    channels_last strides), so only the weights make the classifier run channels_last:
    measured on the default classifier, 1 thread, 32 faces with flip TTA, bf16 took 2.5-2.6
    ms/face NCHW and 1.6 channels_last. bf16 weights: autocast casts a float32 weight on every
    call, to the values a bf16 weight holds, so the outputs are the same bit for bit, and a
    call skips a cast per convolution (``tests/service/test_precision.py``; the folded default
    classifier, flip TTA, 2 threads: 2.15 -> 1.86 ms/face at one face a call, 0.71 -> 0.67 at
    8, 0.69 -> 0.58 at 32, ``python -m benchmarks.classifier_fold``). A
    prepared classifier then runs only under bf16 autocast (``inference_mode``), which the
    swap guard uses too (``service.validation.AccuracyGuard``)."""
    if precision != "bf16" or module in _channels_last:
        return
    with _channels_last_lock:
        if module not in _channels_last:
            module.to(memory_format=torch.channels_last)
            if isinstance(module, FERClassifier):  # convolutions only: autocast keeps a
                for layer in module.autocast_layers():  # BatchNorm's parameters float32
                    for conv in layer.modules():
                        if isinstance(conv, nn.Conv2d):
                            conv.to(torch.bfloat16)
            _channels_last.add(module)
