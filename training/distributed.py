"""One process or one rank of a ``torchrun`` job: the device and the process group.

DDP: the trainers run unchanged under ``torchrun``; ``init_distributed`` reads ``WORLD_SIZE`` /
``RANK`` / ``LOCAL_RANK`` and uses NCCL on CUDA, gloo on the CPU. Rank 0 alone writes logs,
checkpoints and artifacts; the others only compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


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
