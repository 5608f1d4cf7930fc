"""In-memory batching and on-device augmentation.

FER2013 is 28k x 48 x 48 bytes: the whole set fits on any GPU as a uint8 tensor, and a batch is
one index gather. That avoids DataLoader worker start-up, pickling and host-to-device copies,
which dominate the step time for 48x48 images. Augmentation runs on whole batches on the same
device (one ``affine_grid``/``grid_sample`` call).

Determinism (needed for exact ``--resume``): the order of epoch ``e`` is a permutation drawn
from ``seed + e`` with its own generator, so resuming mid-epoch just skips the batches already
seen. Under DDP each rank takes every ``world``-th index of the same permutation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class MemoryLoader:
    """Batches ``(x float [B,1,H,W] in [0,1], y int64 [B])`` from tensors kept on ``device``.

    ``batch_size`` is the global batch: each of ``world`` ranks yields ``batch_size // world``.
    """

    def __init__(
        self,
        images: np.ndarray | Tensor,
        labels: np.ndarray | Tensor,
        batch_size: int,
        device: torch.device,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        max_steps: int = 0,
    ) -> None:
        self.images = torch.as_tensor(images).to(device)
        labels = torch.as_tensor(labels)
        # class indices, or [N, C] target distributions (soft targets) kept as float32
        dtype = torch.float32 if labels.is_floating_point() else torch.int64
        self.labels = labels.to(device=device, dtype=dtype)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.device = device
        self.batch = max(1, batch_size // world)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.rank, self.world = seed, rank, world
        self.max_steps = max_steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> Tensor:
        n = len(self.labels)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world > 1:
            # Training (drop_last): equal shards so every rank runs the same number of steps,
            # as DDP needs. Evaluation: every sample exactly once; ranks may differ by one.
            end = (n // self.world) * self.world if self.drop_last else n
            order = order[self.rank : end : self.world]
        return order

    def _per_rank(self) -> int:
        n = len(self.labels)
        if self.drop_last:
            return n // self.world
        return len(range(self.rank, n, self.world))

    def __len__(self) -> int:
        per_rank = self._per_rank()
        steps = per_rank // self.batch if self.drop_last else math.ceil(per_rank / self.batch)
        return min(steps, self.max_steps) if self.max_steps > 0 else steps

    def iterate(self, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of the current epoch, skipping the first ``start`` (for resume)."""
        order = self._indices().to(self.device)
        for step in range(start, len(self)):
            idx = order[step * self.batch : (step + 1) * self.batch]
            x = self.images[idx].unsqueeze(1).float().div_(255.0)
            yield x, self.labels[idx]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.iterate(0)


def augment_batch(
    x: Tensor,
    flip: bool = True,
    max_shift: float = 0.1,
    max_rotate_deg: float = 10.0,
    scale: tuple[float, float] = (0.9, 1.1),
) -> Tensor:
    """Random flip + small affine (shift as a fraction of the side, rotation, zoom) per image.

    Border pixels are replicated, as a face crop with a slightly different box would look.
    Uses the global torch RNG on ``x.device`` so checkpointed RNG state makes it reproducible.
    """
    b = x.shape[0]
    dev, dt = x.device, x.dtype
    if flip:
        mask = torch.rand(b, device=dev) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    if max_shift <= 0 and max_rotate_deg <= 0 and scale == (1.0, 1.0):
        return x
    angle = (torch.rand(b, device=dev, dtype=dt) * 2 - 1) * math.radians(max_rotate_deg)
    zoom = torch.empty(b, device=dev, dtype=dt).uniform_(scale[0], scale[1])
    shift = (torch.rand(b, 2, device=dev, dtype=dt) * 2 - 1) * (2 * max_shift)  # grid is [-1,1]
    return affine_resample(x, angle, zoom, shift)


def affine_resample(x: Tensor, angle: Tensor, zoom: Tensor, shift: Tensor) -> Tensor:
    """Each image rotated by ``angle`` (radians), zoomed in by ``zoom`` and shifted by ``shift``
    ([B, 2], in grid units: 2 = the side), bilinear, border pixels replicated."""
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
