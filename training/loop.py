"""The epoch loop shared by all trainers: train, validate, select, checkpoint, log, resume.

A trainer is a ``Task`` (see ``training/trainers.py``): it owns its models, optimizers and
schedulers and knows how to take one training step and evaluate one batch. The loop owns
everything else, so resume/checkpoint/DDP behaviour is identical for all four trainers.

Checkpoints (``RUN_DIR/checkpoint.pt``) hold the models, optimizers, schedulers, epoch, step
within the epoch, global step, the partial epoch meters, the best state so far and the RNG
state, so ``--resume`` continues at the exact batch where the run stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from training.checkpoints import (
    cpu_state,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from training.distributed import Dist
from training.run_log import CSVLog, Meter, progress

CHECKPOINT = "checkpoint.pt"


class Loader(Protocol):
    def set_epoch(self, epoch: int) -> None: ...
    def __len__(self) -> int: ...
    def iterate(self, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]: ...


class Task(Protocol):
    kind: str
    modules: dict[str, nn.Module]  # unwrapped modules: what is checkpointed and exported
    optimizers: dict[str, Optimizer]
    schedulers: dict[str, LRScheduler]

    def train(self) -> None: ...
    def eval(self) -> None: ...
    def train_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]: ...
    def eval_step(self, x: Tensor, y: Tensor) -> dict[str, Tensor]: ...
    def score(self, val: dict[str, float]) -> float: ...  # higher is better
    def postfix(self, means: dict[str, float]) -> dict[str, str]: ...


@torch.no_grad()
def evaluate(task: Task, loader: Loader, d: Dist) -> dict[str, float]:
    task.eval()
    meter = Meter()
    loader.set_epoch(0)
    for x, y in loader.iterate(0):
        meter.update(task.eval_step(x, y), len(y))
    return meter.means(d)


def _checkpoint(task: Task, **extra: Any) -> dict[str, Any]:
    return {
        "kind": task.kind,
        "modules": {k: m.state_dict() for k, m in task.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in task.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in task.schedulers.items()},
        "rng": rng_state(),
        **extra,
    }


def fit(
    task: Task,
    cfg: dict[str, Any],
    run_dir: Path,
    d: Dist,
    train_loader: Loader,
    val_loader: Loader,
    resume: bool = False,
) -> dict[str, Any]:
    """Run (or continue) training; returns a summary with the selected state per module."""
    ckpt_path = run_dir / CHECKPOINT
    log = CSVLog(run_dir / "log.csv")
    epoch, start_step, global_step, elapsed = 0, 0, 0, 0.0
    best: dict[str, Any] = {"score": -math.inf, "epoch": -1, "state": None, "val": {}}
    meter = Meter()
    if resume:
        if not ckpt_path.is_file():
            raise ValueError(f"--resume: no {CHECKPOINT} in {run_dir}")
        ck = load_checkpoint(ckpt_path)
        if ck["kind"] != task.kind:
            raise ValueError(f"{ckpt_path} is a {ck['kind']} run, not {task.kind}")
        for k, m in task.modules.items():
            m.load_state_dict(ck["modules"][k])
        for k, o in task.optimizers.items():
            o.load_state_dict(ck["optimizers"][k])
        for k, s in task.schedulers.items():
            s.load_state_dict(ck["schedulers"][k])
        epoch, start_step = ck["epoch"], ck["step_in_epoch"]
        global_step, elapsed, best = ck["global_step"], ck["elapsed"], ck["best"]
        meter.load(ck["meter"], d.device)
        if d.is_main:
            set_rng_state(ck["rng"])
        else:  # only rank 0's RNG is saved; other ranks get a fresh, distinct stream
            seed_everything(cfg["seed"] + 7919 * d.rank + global_step)
        if d.is_main:
            log.truncate_after(epoch)  # rows are 1-based: keep the completed epochs
            print(
                f"resuming {run_dir} at epoch {epoch + 1} step {start_step} "
                f"(global step {global_step})"
            )

    def save(ep: int, step_in_epoch: int) -> None:
        if d.is_main:
            save_checkpoint(
                ckpt_path,
                _checkpoint(
                    task,
                    epoch=ep,
                    step_in_epoch=step_in_epoch,
                    global_step=global_step,
                    elapsed=elapsed + time.time() - t0,
                    best=best,
                    meter=meter.state(),
                ),
            )

    every, refresh = cfg["checkpoint_every"], max(1, cfg["log_every"])
    t0 = time.time()
    for ep in range(epoch, cfg["epochs"]):
        train_loader.set_epoch(ep)
        task.train()
        steps = len(train_loader)
        bar = progress(steps, start_step, f"{task.kind} {ep + 1}/{cfg['epochs']}", d)
        t_ep = time.time()
        for i, (x, y) in enumerate(train_loader.iterate(start_step), start=start_step):
            parts = task.train_step(x, y)
            meter.update(parts, len(y))
            global_step += 1
            bar.update(1)
            if not bar.disable and (i + 1) % refresh == 0:
                bar.set_postfix(task.postfix(meter.means()))
            if every and global_step % every == 0 and i + 1 < steps:
                save(ep, i + 1)
        bar.close()
        train = meter.means(d)
        meter = Meter()
        start_step = 0
        val = evaluate(task, val_loader, d)
        score = task.score(val)
        if cfg["select"] == "last" or score > best["score"]:
            best = {
                "score": score,
                "epoch": ep + 1,
                "val": val,
                "state": {k: cpu_state(m) for k, m in task.modules.items()},
            }
        lrs = {f"lr_{k}": o.param_groups[0]["lr"] for k, o in task.optimizers.items()}
        row = {"epoch": ep + 1, "step": global_step, "time_s": round(time.time() - t_ep, 2)}
        row |= lrs | {f"train_{k}": v for k, v in train.items()}
        row |= {f"val_{k}": v for k, v in val.items()}
        if d.is_main:
            log.append(row)
            shown = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k.startswith("val_"))
            print(
                f"[{task.kind}] epoch {ep + 1}/{cfg['epochs']} step {global_step} "
                f"{row['time_s']}s train_loss={train.get('loss', float('nan')):.4g} {shown}",
                flush=True,
            )
        save(ep + 1, 0)
        if _over_budget(cfg["time_budget_min"], time.time() - t0, ep + 1 - epoch, d):
            if d.is_main:
                print(f"[{task.kind}] time budget reached: stopping after epoch {ep + 1}")
            break
    finished_resume = resume and epoch >= cfg["epochs"]
    if best["state"] is None or (finished_resume and cfg["select"] == "last"):
        # Resumed a finished run: nothing new; export the current state (the last epoch's)
        # when there is no selection yet or the resume asks for the last epoch, e.g. a rate
        # target's selection that kept an early epoch the run has since improved on.
        best = {
            "score": -math.inf,
            "epoch": epoch,
            "val": evaluate(task, val_loader, d),
            "state": {k: cpu_state(m) for k, m in task.modules.items()},
        }
    return {
        "best_epoch": best["epoch"],
        "val": best["val"],
        "state": best["state"],
        "steps": global_step,
        "epochs": cfg["epochs"],
        "wall_time_s": round(elapsed + time.time() - t0, 1),
    }


def _over_budget(budget_min: float, spent_s: float, epochs_done: int, d: Dist) -> bool:
    """True when one more epoch (at the mean epoch time so far) would pass the budget.

    Rank 0 decides and broadcasts, so DDP ranks never disagree and deadlock."""
    if budget_min <= 0 or epochs_done <= 0:
        return False
    stop = torch.tensor(
        [float(spent_s * (epochs_done + 1) / epochs_done > budget_min * 60)], device=d.device
    )
    if d.enabled:
        torch.distributed.broadcast(stop, src=0)
    return bool(stop.item())
