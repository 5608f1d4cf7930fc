"""Training infrastructure shared by all trainers: devices, DDP, RNG, checkpoints, logs.

DDP: the trainers run unchanged under ``torchrun``; ``init_distributed`` reads ``WORLD_SIZE`` /
``RANK`` / ``LOCAL_RANK`` and uses NCCL on CUDA, gloo on the CPU. Rank 0 alone writes logs,
checkpoints and artifacts; the others only compute.
"""

from __future__ import annotations

import csv
import math
import os
import random
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from training.config import REPO_ROOT


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def resolve_device(arg: str, local_rank: int = 0) -> torch.device:
    if arg == "auto":
        arg = "cuda" if torch.cuda.is_available() else "cpu"
    if arg.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("--device cuda requested but CUDA is not available")
        dev = torch.device(arg if ":" in arg else f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True  # fixed 48x48 shapes: autotuning pays off
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return dev
    if arg != "cpu":
        raise ValueError(f"--device must be auto, cpu or cuda[:N], got {arg!r}")
    return torch.device("cpu")


def init_distributed(device_arg: str = "auto") -> Dist:
    """Single process, or one rank of a ``torchrun`` job (env vars set by torchrun)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_arg, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Dist(rank=rank, world=world, local_rank=local_rank, device=device)


def shutdown_distributed(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file then rename, so a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    # Our own file (python RNG state, numpy arrays): not an untrusted artifact.
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    return state


def cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def make_optimizer(
    params: Iterable[Any],
    kind: str,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def make_scheduler(opt: Optimizer, kind: str, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    """Linear warm-up then cosine decay to 0 (or constant). A LambdaLR stores only its step
    counter, so a resumed run with more epochs simply stretches the remaining schedule."""
    total = max(1, total_steps)
    warm = max(0, min(warmup_steps, total - 1))

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "constant":
            return 1.0
        t = min(1.0, (step - warm) / max(1, total - warm))
        return 0.5 * (1.0 + math.cos(math.pi * t))

    return LambdaLR(opt, factor)


class Meter:
    """Running sums of batch metrics, kept on the device to avoid a sync per step."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def update(self, parts: dict[str, Tensor], n: int) -> None:
        for k, v in parts.items():
            v = v.detach().double() * n
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.count += n

    def state(self) -> dict[str, Any]:
        return {"sums": {k: v.cpu() for k, v in self.sums.items()}, "count": self.count}

    def load(self, state: dict[str, Any], device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in state["sums"].items()}
        self.count = int(state["count"])

    def means(self, d: Dist | None = None) -> dict[str, float]:
        """Sample-weighted means, summed over all ranks when distributed."""
        keys = sorted(self.sums)
        if not keys:
            return {}
        dev = self.sums[keys[0]].device
        count = torch.tensor(float(self.count), dtype=torch.float64, device=dev)
        vec = torch.stack([self.sums[k] for k in keys] + [count])
        if d is not None and d.enabled:
            dist.all_reduce(vec)
        vals = vec.tolist()
        n = max(vals[-1], 1.0)
        return {k: v / n for k, v in zip(keys, vals[:-1], strict=True)}


class CSVLog:
    """``log.csv``: one row per epoch with every train/val term as its own column."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, epoch: int) -> None:
        """On resume: drop rows of epochs that will be run again."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        rows = [r for r in rows if int(r["epoch"]) <= epoch]
        self.path.unlink()
        for r in rows:
            self.append(r)

    def append(self, row: dict[str, Any]) -> None:
        fields = list(row)
        if self.path.is_file():
            with open(self.path, newline="") as f:
                old = list(csv.DictReader(f))
                header = list(old[0].keys()) if old else []
            if header and set(fields) - set(header):  # new columns: rewrite with a wider header
                header += [k for k in fields if k not in header]
                with open(self.path, "w", newline="") as f:
                    w = csv.DictWriter(f, header, restval="")
                    w.writeheader()
                    w.writerows(old)
            fields = header or fields
        new = not self.path.is_file()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fields, restval="")
            if new:
                w.writeheader()
            w.writerow({k: _fmt(v) for k, v in row.items()})


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def progress(total: int, initial: int, desc: str, d: Dist) -> Any:
    """A tqdm bar on interactive rank-0 terminals; a no-op object otherwise."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        dynamic_ncols=True,
        leave=False,
        disable=not (d.is_main and sys.stderr.isatty()),
    )


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
