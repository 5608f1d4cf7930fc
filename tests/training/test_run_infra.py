"""The run infrastructure the trainers share: schedules, log.csv, checkpoint files."""

from __future__ import annotations

import csv
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from training.checkpoints import load_checkpoint, save_checkpoint
from training.optim import make_optimizer, make_scheduler
from training.run_log import CSVLog


def _lrs(kind: str, total: int, warm: int) -> list[float]:
    opt = make_optimizer([torch.nn.Parameter(torch.zeros(1))], "sgd", 1.0)
    sched = make_scheduler(opt, kind, total, warm)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedule_warms_up_linearly_then_decays_by_cosine() -> None:
    lrs = _lrs("cosine", 10, 2)
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert all(a >= b for a, b in pairwise(lrs[2:])) and lrs[-1] < 0.05
    assert _lrs("constant", 5, 0) == [1.0] * 5


def test_csv_log_widens_its_header_and_drops_epochs_to_rerun(tmp_path: Path) -> None:
    log = CSVLog(tmp_path / "log.csv")
    log.append({"epoch": 1, "loss": 0.5})
    log.append({"epoch": 2, "loss": 0.25, "acc": 0.75})  # a new column rewrites the header
    log.truncate_after(1)
    log.append({"epoch": 2, "loss": 0.125, "acc": 0.5})
    with open(tmp_path / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"epoch": "1", "loss": "0.5", "acc": ""},
        {"epoch": "2", "loss": "0.125", "acc": "0.5"},
    ]


def test_checkpoint_is_written_whole_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, {"step": 3, "w": torch.ones(2)})
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["w"], torch.ones(2))
    assert not path.with_suffix(".tmp").exists()
