"""End-to-end runs of the four trainers on tiny generated data (CPU, a few steps each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from core.artifacts import load_classifier, load_codec
from tests.training.trainer_runs import REPO, read_log, tiny_config, tiny_pair, train_cli


def test_classifier_trains_and_exports(tmp_path: Path, tiny_data: Path) -> None:
    cfg = tiny_config(tmp_path, tiny_data, "classifier", name="clf", epochs=2)
    assert train_cli("classifier", "--config", cfg, "--out", tmp_path / "run") == 0
    model, m = load_classifier(tmp_path / "models" / "clf" / "1")
    assert m.kind == "classifier" and "val_accuracy" in m.metrics
    assert m.training["steps"] == 4 and m.training["split_sizes"] == {"train": 57, "val": 7}
    assert model(torch.rand(2, 1, 48, 48)).shape == (2, 7)
    rows = read_log(tmp_path / "run")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr_main"} <= set(rows[0])


def test_codec_trains_and_reports_real_bitstreams(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    clf = str(model_repo / "tiny-classifier" / "1")
    cfg = tiny_config(tmp_path, tiny_data, "codec", name="cod", classifier=clf)
    assert train_cli("codec", "--config", cfg, "--out", tmp_path / "run") == 0
    codec, m = load_codec(tmp_path / "models" / "cod" / "1")
    for key in (
        "bytes_per_face",
        "bitstream_bpp",
        "bitstream_psnr",
        "bitstream_accuracy",
        "val_bpp",
        "val_psnr",
    ):
        assert key in m.metrics, key
    assert m.metrics["bytes_per_face"] > 16  # container header + streams
    payloads = codec.encode(torch.rand(2, 1, 48, 48))
    assert len(codec.decode(payloads)) == 2
    row = read_log(tmp_path / "run")[0]
    assert {"train_bpp", "train_mse", "train_aux", "val_bpp", "val_psnr", "lr_aux"} <= set(row)


def test_codec_channels_last_trains_like_contiguous(tmp_path: Path, tiny_data: Path) -> None:
    # channels_last is a memory layout, not a numerical change: same seed, same steps, the same
    # validation figures; and its (strided) weights still export as a loadable artifact.
    logs, convs = [], {}
    for cl in (False, True):
        run = tmp_path / f"run-{cl}"
        cfg = tiny_config(tmp_path, tiny_data, "codec", name=f"cl-{cl}", channels_last=cl)
        assert train_cli("codec", "--config", cfg, "--out", run) == 0
        logs.append(read_log(run)[0])
        state = torch.load(run / "checkpoint.pt", weights_only=False)["modules"]["codec"]
        convs[cl] = [w for w in state.values() if w.dim() == 4 and w.shape[2] > 1]
    for key in ("val_bpp", "val_mse", "train_loss"):
        assert float(logs[1][key]) == pytest.approx(float(logs[0][key]), rel=1e-3), key
    assert all(w.is_contiguous() for w in convs[False])
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs[True])
    assert not all(w.is_contiguous() for w in convs[True])  # the layout was really changed
    codec, _ = load_codec(tmp_path / "models" / "cl-True" / "1")
    assert len(codec.decode(codec.encode(torch.rand(2, 1, 48, 48)))) == 2


def test_codec_warm_starts_widened_and_exports_the_wider_latent(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    init = str(model_repo / "tiny-codec" / "1")
    cfg = tiny_config(tmp_path, tiny_data, "codec", name="wide", init_codec=init, widen_M=40)
    assert train_cli("codec", "--config", cfg, "--out", tmp_path / "run") == 0
    codec, m = load_codec(tmp_path / "models" / "wide" / "1")
    assert m.architecture["M"] == 40 and m.architecture["N"] == 16
    assert len(codec.decode(codec.encode(torch.rand(2, 1, 48, 48)))) == 2


def test_finetune_warm_starts_widened(tmp_path: Path, tiny_data: Path, model_repo: Path) -> None:
    cfg = tiny_config(
        tmp_path, tiny_data, "finetune", name="wide-ft", widen_M=32, **tiny_pair(model_repo)
    )
    assert train_cli("finetune", "--config", cfg, "--out", tmp_path / "run") == 0
    _, m = load_codec(tmp_path / "models" / "wide-ft" / "1")
    assert m.architecture["M"] == 32


@pytest.mark.parametrize("trainer", ["finetune", "joint"])
def test_task_trainers_export(
    tmp_path: Path, tiny_data: Path, model_repo: Path, trainer: str
) -> None:
    extra: dict[str, Any] = {
        **tiny_pair(model_repo),
        "name": "task-codec",
        "lambda_c": 0.5,
        "N": 32,
    }
    if trainer == "joint":
        extra |= {"classifier_name": "task-clf", "lambda_clean": 0.5}
    cfg = tiny_config(tmp_path, tiny_data, trainer, **extra)
    assert train_cli(trainer, "--config", cfg, "--out", tmp_path / "run") == 0
    _, m = load_codec(tmp_path / "models" / "task-codec" / "1")
    assert m.architecture["N"] == 16  # taken from init_codec, not the config's N=32
    assert "bitstream_accuracy" in m.metrics and "val_ce" in m.metrics
    row = read_log(tmp_path / "run")[0]
    assert {"train_ce", "train_bpp", "val_acc"} <= set(row)
    if trainer == "joint":
        _, mc = load_classifier(tmp_path / "models" / "task-clf" / "1")
        assert "train_ce_clean" in row and "val_acc_clean" in mc.metrics
        assert m.training["classifier_artifact"] == "task-clf/1"


def test_joint_target_bpp_raises_lambda_r_and_checkpoints_it(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    """A target far under the tiny codec's rate: the multiplier climbs every step, is logged,
    checkpointed (a resumed run continues from it) and recorded in the exported manifest."""
    extra: dict[str, Any] = {
        **tiny_pair(model_repo),
        "name": "rate-codec",
        "classifier_name": "rate-clf",
        "lambda_r": 2.0,
        "target_bpp": 0.01,  # under the tiny codec's coded rate (~0.04), not so far it clamps
        "rate_gain": 0.01,
        "scheduler": "constant",
    }
    cfg = tiny_config(tmp_path, tiny_data, "joint", **extra)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_cli("joint", "--config", cfg, "--out", straight, "--set", "epochs=2") == 0
    rows = read_log(straight)
    assert 2.0 < float(rows[0]["train_lambda_r"]) < float(rows[1]["train_lambda_r"])
    assert float(rows[0]["train_bpp_coded"]) > 0.001  # what the controller held to the target
    ck = torch.load(straight / "checkpoint.pt", weights_only=False)
    lam = float(ck["modules"]["rate"]["log_lambda_r"].exp())
    assert lam > float(rows[1]["train_lambda_r"])  # the last step's value, above the mean
    _, m = load_codec(tmp_path / "models" / "rate-codec" / "1")
    assert m.metrics["val_lambda_r"] > 2.0
    assert train_cli("joint", "--config", cfg, "--out", split, "--set", "export=false") == 0
    assert (
        train_cli(
            "joint",
            "--config",
            cfg,
            "--out",
            split,
            "--resume",
            "--set",
            "epochs=2",
            "--set",
            "export=false",
        )
        == 0
    )
    resumed = torch.load(split / "checkpoint.pt", weights_only=False)
    assert float(resumed["modules"]["rate"]["log_lambda_r"].exp()) == pytest.approx(lam)


def test_target_bpp_measures_the_faces_before_augmentation(
    tmp_path: Path, tiny_data: Path, model_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shifted faces code cheaper than the faces a client sends: the controller must see the
    latter, the very batch train_step was given."""
    from training.trainers import CodecTask

    given: list[torch.Tensor] = []
    measured: list[torch.Tensor] = []
    real_step, real_bpp = CodecTask.train_step, CodecTask._coded_bpp

    def step(self: CodecTask, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        given.append(x)
        return real_step(self, x, y)

    def bpp(self: CodecTask, x: torch.Tensor) -> torch.Tensor:
        measured.append(x)
        return real_bpp(self, x)

    monkeypatch.setattr(CodecTask, "train_step", step)
    monkeypatch.setattr(CodecTask, "_coded_bpp", bpp)
    extra: dict[str, Any] = {
        **tiny_pair(model_repo),
        "target_bpp": 0.5,
        "aug_shift": 0.2,
        "export": False,
    }
    cfg = tiny_config(tmp_path, tiny_data, "finetune", **extra)
    assert train_cli("finetune", "--config", cfg, "--out", tmp_path / "run") == 0
    assert len(measured) == len(given) == 2
    assert all(m is g for m, g in zip(measured, given, strict=True))


def test_sweep_exports_one_codec_per_lambda(tmp_path: Path, tiny_data: Path) -> None:
    cfg = tiny_config(tmp_path, tiny_data, "codec", name="sw", max_steps_per_epoch=1)
    out = tmp_path / "sweep"
    assert train_cli("codec", "--config", cfg, "--out", out, "--lambdas", "0.001,0.01") == 0
    for lmbda in ("0.001", "0.01"):
        _, m = load_codec(tmp_path / "models" / f"sw-l{lmbda}" / "1")
        assert m.metrics["lmbda"] == float(lmbda)
        assert (out / f"lmbda-{lmbda}" / "log.csv").is_file()


def test_ddp_two_processes_cpu(tmp_path: Path, tiny_data: Path) -> None:
    cfg = tiny_config(tmp_path, tiny_data, "classifier", name="ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "cli.main",
        "train",
        "classifier",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, m = load_classifier(tmp_path / "models" / "ddp" / "1")
    assert m.training["world_size"] == 2 and m.training["steps"] == 2
    assert len(read_log(tmp_path / "run")) == 1


def test_classifier_trains_on_ferplus_soft_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 64
    votes = rng.integers(0, 4, (n, 10)).astype(np.int16)
    data = tmp_path / "votes.npz"
    np.savez(
        data,
        images=np.kron(
            rng.integers(0, 256, (n, 12, 12), dtype=np.uint8), np.ones((4, 4), np.uint8)
        ),
        labels=np.arange(n) % 7,
        split=np.array(["Training"] * n),
        ferplus_votes=votes,
        ferplus_columns=np.array(
            [
                "neutral",
                "happiness",
                "surprise",
                "sadness",
                "anger",
                "disgust",
                "fear",
                "contempt",
                "unknown",
                "NF",
            ]
        ),
    )
    cfg = tiny_config(tmp_path, data, "classifier", name="soft", ferplus_soft=0.4)
    assert train_cli("classifier", "--config", cfg, "--out", tmp_path / "run") == 0
    rows = read_log(tmp_path / "run")
    assert float(rows[0]["train_loss"]) > 0 and 0 <= float(rows[0]["val_acc"]) <= 1
