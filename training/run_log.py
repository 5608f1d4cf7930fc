"""What a run reports while it trains: epoch means over all ranks, ``log.csv``, the progress bar."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from training.distributed import Dist


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
