"""Assemble a training run: data, loaders, models, task, loop, export. Used by ``fercomp train``."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader, DistributedSampler

from core.artifacts import load_classifier, load_codec_model
from core.classifier import ClassifierConfig, FERClassifier
from core.codec import CodecConfig, FaceHyperprior
from training.batching import MemoryLoader, augment_batch
from training.checkpoints import seed_everything
from training.client_variation import camera
from training.config import resolve_input
from training.data import FaceDataset, ferplus_soft_targets, load_dataset, split_train_val
from training.distributed import Dist, init_distributed, shutdown_distributed
from training.export import (
    export_classifier,
    export_codec,
    provenance,
    refuse_released_export,
)
from training.loop import CHECKPOINT, Loader, fit
from training.precision import resolve_amp
from training.trainers import Augment, ClassifierTask, CodecTask
from training.widen import widen_classifier, widen_codec_latent


class TorchLoader:
    """``loader = "dataloader"``: per-sample CPU augmentation in worker processes."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch: int,
        d: Dist,
        train: bool,
        cfg: dict[str, Any],
    ) -> None:
        self.ds = FaceDataset(images, labels, augment=train and cfg["augment"])
        self.sampler = DistributedSampler(
            self.ds, d.world, d.rank, shuffle=train, seed=cfg["seed"], drop_last=train
        )
        self.loader = DataLoader(
            self.ds,
            max(1, batch // d.world),
            sampler=self.sampler,
            drop_last=train,
            num_workers=cfg["num_workers"],
            pin_memory=d.device.type == "cuda",
            persistent_workers=cfg["num_workers"] > 0,
        )
        self.device = d.device
        self.max_steps = cfg["max_steps_per_epoch"] if train else 0

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        n = len(self.loader)
        return min(n, self.max_steps) if self.max_steps > 0 else n

    def iterate(self, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in islice(self.loader, start, len(self)):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _loaders(
    cfg: dict[str, Any],
    d: Dist,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
) -> tuple[Loader, Loader, Augment]:
    tl, vl, geometric = _geometric_loaders(cfg, d, train, val)
    if not (cfg["augment"] and cfg["aug_client"]):
        return tl, vl, geometric
    return tl, vl, lambda x: camera(geometric(x))


def _geometric_loaders(
    cfg: dict[str, Any],
    d: Dist,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
) -> tuple[Loader, Loader, Augment]:
    if cfg["loader"] == "dataloader":
        tl: Loader = TorchLoader(*train, cfg["batch_size"], d, True, cfg)
        vl: Loader = TorchLoader(*val, cfg["eval_batch_size"], d, False, cfg)
        return tl, vl, lambda x: x  # augmented per sample in the workers
    tl = MemoryLoader(
        *train,
        cfg["batch_size"],
        d.device,
        True,
        True,
        cfg["seed"],
        d.rank,
        d.world,
        cfg["max_steps_per_epoch"],
    )
    vl = MemoryLoader(*val, cfg["eval_batch_size"], d.device, False, False, 0, d.rank, d.world)
    if not cfg["augment"]:
        return tl, vl, lambda x: x
    zoom = cfg["aug_zoom"]
    return (
        tl,
        vl,
        lambda x: augment_batch(
            x, True, cfg["aug_shift"], cfg["aug_rotate"], (1.0 - zoom, 1.0 + zoom)
        ),
    )


def _prepare_run_dir(run_dir: Path, resume: bool, fresh: bool, is_main: bool) -> None:
    ckpt = run_dir / CHECKPOINT
    if fresh and is_main:
        for f in (ckpt, run_dir / "log.csv"):
            f.unlink(missing_ok=True)
    elif ckpt.exists() and not resume:
        raise ValueError(
            f"{run_dir} already holds a run: pass --resume to continue it, --fresh to restart, "
            "or choose another --out"
        )


def run_training(
    trainer: str,
    cfg: dict[str, Any],
    run_dir: Path,
    d: Dist,
    resume: bool = False,
    fresh: bool = False,
) -> dict[str, Any]:
    """Train one model (rank 0 exports it); returns a summary with the artifact paths."""
    _prepare_run_dir(run_dir, resume, fresh, d.is_main)
    data_path = resolve_input(cfg["data"])
    images, labels = load_dataset(data_path, cfg["split"], cfg["label_source"])
    tr, va = split_train_val(labels, cfg["val_fraction"], cfg["seed"])
    if cfg["limit_train"] > 0:
        tr = tr[: cfg["limit_train"]]
    if cfg["limit_val"] > 0:
        va = va[: cfg["limit_val"]]
    if len(va) == 0:
        va = tr[: max(1, min(len(tr), 256))]  # val_fraction = 0: monitor on training faces
    sizes = {"train": len(tr), "val": len(va)}
    train_targets = labels[tr]
    if cfg.get("ferplus_soft", 0.0) > 0:  # soft targets for training; validation stays FER2013
        soft = ferplus_soft_targets(data_path, cfg["split"], labels, cfg["ferplus_soft"])
        train_targets = soft[tr]
    train_loader, val_loader, augment = _loaders(
        cfg, d, (images[tr], train_targets), (images[va], labels[va])
    )
    steps = len(train_loader)
    if steps == 0:
        raise ValueError(
            f"no training steps: {len(tr)} training faces < batch_size {cfg['batch_size']}"
        )

    # "auto" becomes what this device runs (recorded as such in config.json and the manifest).
    cfg["amp"] = resolve_amp(cfg["amp"], d.device)
    seed_everything(cfg["seed"])  # identical initial weights on every rank
    task: Any
    clf: FERClassifier | None = None
    teacher = None  # knowledge distillation (classifier, finetune, joint: kd_weight > 0)
    if trainer != "codec" and cfg["kd_weight"] > 0:
        teacher = load_classifier(resolve_input(cfg["kd_teacher"]), d.device)[0]
    if trainer == "classifier":
        if cfg["init_classifier"]:  # warm start / resume point: an exported artifact
            model = load_classifier(resolve_input(cfg["init_classifier"]), "cpu")[0].train()
            if cfg["widen_to"]:
                model = widen_classifier(model, cfg["widen_to"])
            cfg["width"], cfg["stem"] = model.config.width, model.config.stem
        else:
            model = FERClassifier(ClassifierConfig(width=cfg["width"], stem=cfg["stem"]))
        task = ClassifierTask(model, cfg, d, steps, augment, teacher=teacher)
    else:
        # Warm start, e.g. a new lambda from a trained neighbour; finetune and joint configs
        # require both init_codec and classifier (config_schema), a codec run neither.
        if cfg["init_codec"]:
            codec = load_codec_model(resolve_input(cfg["init_codec"]))[0].train()
            if cfg["widen_M"]:
                codec = widen_codec_latent(codec, cfg["widen_M"])
            cfg["N"], cfg["M"] = codec.config.N, codec.config.M
        else:
            codec = FaceHyperprior(CodecConfig(N=cfg["N"], M=cfg["M"]))
        if cfg["classifier"]:
            clf = load_classifier(resolve_input(cfg["classifier"]), d.device)[0]
        # The config decides the alignment the codec is trained (and exported) at, so a
        # default-aligned artifact can be fine-tuned in latent alignment (docs/CODEC.md).
        codec.config = dataclasses.replace(codec.config, align_log2=cfg["align_log2"])
        task = CodecTask(
            codec,
            cfg,
            d,
            steps,
            augment,
            classifier=None if trainer == "codec" else clf,
            train_classifier=trainer == "joint",
            kind=trainer,
            teacher=teacher,
        )
    seed_everything(cfg["seed"] + 7919 * d.rank)  # distinct augmentation streams per rank

    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        print(
            f"[{trainer}] {data_path.name}: train {sizes['train']} val {sizes['val']}, "
            f"{steps} steps/epoch, device {d.device}, world {d.world}, bf16 amp {cfg['amp']}, "
            f"run dir {run_dir}",
            flush=True,
        )
    summary = fit(task, cfg, run_dir, d, train_loader, val_loader, resume=resume)
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "best_epoch": summary["best_epoch"],
        "val": summary["val"],
        "steps": summary["steps"],
        "artifacts": [],
    }
    if d.is_main and cfg["export"]:
        training = provenance(trainer, cfg, summary, d.device, d.world, data_path, sizes)
        state = summary["state"]
        if trainer == "classifier":
            best = copy.deepcopy(task.model).cpu()
            best.load_state_dict(task.export_state(state))
            # val_accuracy is that of what is exported and served (EMA weights, flip TTA).
            served = {"val_accuracy": round(summary["val"][task.served_key()], 6)}
            m = export_classifier(best, cfg, summary, training, extra=served)
            result["artifacts"].append(str(Path(cfg["export_dir"]) / m.name / m.version))
        else:
            best_codec = copy.deepcopy(task.codec).cpu()
            best_codec.load_state_dict(state["codec"])
            judge = clf
            if trainer == "joint" and clf is not None:
                judge = copy.deepcopy(clf).cpu()
                judge.load_state_dict(state["classifier"])
                mc = export_classifier(judge, cfg, summary, training, cfg["classifier_name"])
                result["artifacts"].append(str(Path(cfg["export_dir"]) / mc.name / mc.version))
                training = {**training, "classifier_artifact": mc.ref}
            m = export_codec(best_codec, cfg, summary, training, images[va], labels[va], judge)
            result["artifacts"].insert(0, str(Path(cfg["export_dir"]) / m.name / m.version))
            result["metrics"] = m.metrics
        if d.is_main:
            for a in result["artifacts"]:
                print(f"[{trainer}] exported {a}", flush=True)
    d.barrier()
    return result


def _refuse_released(trainer: str, cfg: dict[str, Any]) -> None:
    """Refuse a run whose exports would replace released artifacts (refuse_released_export)."""
    if cfg["export"]:
        refs = [f"{cfg['name']}/{cfg['version']}"]
        if trainer == "joint":
            refs.append(f"{cfg['classifier_name']}/{cfg['version']}")
        refuse_released_export(Path(cfg["export_dir"]), refs)


def default_run_dir(trainer: str, cfg: dict[str, Any]) -> Path:
    return Path("runs") / trainer / f"{cfg['name']}-{cfg['version']}"


def sweep_config(cfg: dict[str, Any], lmbda: float) -> dict[str, Any]:
    """One sweep point: its own lmbda, artifact name and (optionally) init codec."""
    c = dict(cfg, lmbda=lmbda, name=f"{cfg['name']}-l{lmbda:g}")
    if "classifier_name" in c:  # joint runs export a classifier per point too
        c["classifier_name"] = f"{cfg['classifier_name']}-l{lmbda:g}"
    if "{lmbda" in c.get("init_codec", ""):
        c["init_codec"] = c["init_codec"].format(lmbda=lmbda)
    return c


def train_main(
    trainer: str,
    cfg: dict[str, Any],
    out: Path | None,
    device: str = "auto",
    resume: bool = False,
    fresh: bool = False,
    lambdas: list[float] | None = None,
) -> list[dict[str, Any]]:
    """Entry point for one run or a sequential lambda sweep (each to its own run dir)."""
    d = init_distributed(device)
    try:
        if lambdas and trainer == "classifier":
            raise ValueError("--lambdas applies to the codec trainers, not the classifier")
        points = [sweep_config(cfg, lmbda) for lmbda in lambdas] if lambdas else [cfg]
        # every point's exports before anything trains (not hours later, at a sweep's third
        # point) and before --fresh clears a run directory
        for c in points:
            _refuse_released(trainer, c)
        if not lambdas:
            return [
                run_training(trainer, cfg, out or default_run_dir(trainer, cfg), d, resume, fresh)
            ]
        base = out or Path("runs") / trainer / f"{cfg['name']}-sweep"
        results = []
        for lmbda, c in zip(lambdas, points, strict=True):
            run_dir = base / f"lmbda-{lmbda:g}"
            # --resume continues the points that started and starts the others.
            again = resume and (run_dir / CHECKPOINT).exists()
            results.append(run_training(trainer, c, run_dir, d, again, fresh))
        return results
    finally:
        shutdown_distributed(d)
