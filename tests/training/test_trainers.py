"""End-to-end runs of the four trainers on tiny generated data (CPU, a few steps each)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cli.main import main
from core.artifacts import load_classifier, load_codec, load_codec_model
from training.config import DEFAULTS

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "width": 8,
    "N": 16,
    "M": 24,
    "epochs": 1,
    "batch_size": 16,
    "eval_batch_size": 32,
    "max_steps_per_epoch": 2,
    "limit_val": 16,
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    n = 80
    coarse = rng.integers(0, 256, (n, 12, 12), dtype=np.uint8)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(
        path,
        images=np.kron(coarse, np.ones((4, 4), np.uint8)),  # smooth-ish faces
        labels=np.arange(n) % 7,
        split=np.array(["Training"] * 64 + ["PublicTest"] * 16),
    )
    return path


def _config(tmp_path: Path, data: Path, trainer: str, **extra: Any) -> Path:
    """A tiny TOML config (values are str/int/float/bool: JSON literals are valid TOML)."""
    tiny = {k: v for k, v in TINY.items() if k in DEFAULTS[trainer]}
    values = {"data": str(data), "export_dir": str(tmp_path / "models"), **tiny, **extra}
    cfg = tmp_path / f"{trainer}.toml"
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return cfg


def _tiny_pair(model_repo: Path) -> dict[str, str]:
    """The init codec and the classifier a finetune / joint run starts from."""
    return {
        "init_codec": str(model_repo / "tiny-codec" / "1"),
        "classifier": str(model_repo / "tiny-classifier" / "1"),
    }


def _train(*args: str | Path) -> int:
    return main(["train", *map(str, args), "--device", "cpu"])


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_classifier_trains_and_exports(tmp_path: Path, tiny_data: Path) -> None:
    cfg = _config(tmp_path, tiny_data, "classifier", name="clf", epochs=2)
    assert _train("classifier", "--config", cfg, "--out", tmp_path / "run") == 0
    model, m = load_classifier(tmp_path / "models" / "clf" / "1")
    assert m.kind == "classifier" and "val_accuracy" in m.metrics
    assert m.training["steps"] == 4 and m.training["split_sizes"] == {"train": 57, "val": 7}
    assert model(torch.rand(2, 1, 48, 48)).shape == (2, 7)
    rows = _log(tmp_path / "run")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr_main"} <= set(rows[0])


def test_codec_trains_and_reports_real_bitstreams(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    clf = str(model_repo / "tiny-classifier" / "1")
    cfg = _config(tmp_path, tiny_data, "codec", name="cod", classifier=clf)
    assert _train("codec", "--config", cfg, "--out", tmp_path / "run") == 0
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
    row = _log(tmp_path / "run")[0]
    assert {"train_bpp", "train_mse", "train_aux", "val_bpp", "val_psnr", "lr_aux"} <= set(row)


def test_codec_channels_last_trains_like_contiguous(tmp_path: Path, tiny_data: Path) -> None:
    # channels_last is a memory layout, not a numerical change: same seed, same steps, the same
    # validation figures; and its (strided) weights still export as a loadable artifact.
    logs, convs = [], {}
    for cl in (False, True):
        run = tmp_path / f"run-{cl}"
        cfg = _config(tmp_path, tiny_data, "codec", name=f"cl-{cl}", channels_last=cl)
        assert _train("codec", "--config", cfg, "--out", run) == 0
        logs.append(_log(run)[0])
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
    cfg = _config(tmp_path, tiny_data, "codec", name="wide", init_codec=init, widen_M=40)
    assert _train("codec", "--config", cfg, "--out", tmp_path / "run") == 0
    codec, m = load_codec(tmp_path / "models" / "wide" / "1")
    assert m.architecture["M"] == 40 and m.architecture["N"] == 16
    assert len(codec.decode(codec.encode(torch.rand(2, 1, 48, 48)))) == 2


def test_finetune_warm_starts_widened(tmp_path: Path, tiny_data: Path, model_repo: Path) -> None:
    cfg = _config(
        tmp_path, tiny_data, "finetune", name="wide-ft", widen_M=32, **_tiny_pair(model_repo)
    )
    assert _train("finetune", "--config", cfg, "--out", tmp_path / "run") == 0
    _, m = load_codec(tmp_path / "models" / "wide-ft" / "1")
    assert m.architecture["M"] == 32


@pytest.mark.parametrize("trainer", ["finetune", "joint"])
def test_task_trainers_export(
    tmp_path: Path, tiny_data: Path, model_repo: Path, trainer: str
) -> None:
    extra: dict[str, Any] = {
        **_tiny_pair(model_repo),
        "name": "task-codec",
        "lambda_c": 0.5,
        "N": 32,
    }
    if trainer == "joint":
        extra |= {"classifier_name": "task-clf", "lambda_clean": 0.5}
    cfg = _config(tmp_path, tiny_data, trainer, **extra)
    assert _train(trainer, "--config", cfg, "--out", tmp_path / "run") == 0
    _, m = load_codec(tmp_path / "models" / "task-codec" / "1")
    assert m.architecture["N"] == 16  # taken from init_codec, not the config's N=32
    assert "bitstream_accuracy" in m.metrics and "val_ce" in m.metrics
    row = _log(tmp_path / "run")[0]
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
        **_tiny_pair(model_repo),
        "name": "rate-codec",
        "classifier_name": "rate-clf",
        "lambda_r": 2.0,
        "target_bpp": 0.01,  # under the tiny codec's coded rate (~0.04), not so far it clamps
        "rate_gain": 0.01,
        "scheduler": "constant",
    }
    cfg = _config(tmp_path, tiny_data, "joint", **extra)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train("joint", "--config", cfg, "--out", straight, "--set", "epochs=2") == 0
    rows = _log(straight)
    assert 2.0 < float(rows[0]["train_lambda_r"]) < float(rows[1]["train_lambda_r"])
    assert float(rows[0]["train_bpp_coded"]) > 0.001  # what the controller held to the target
    ck = torch.load(straight / "checkpoint.pt", weights_only=False)
    lam = float(ck["modules"]["rate"]["log_lambda_r"].exp())
    assert lam > float(rows[1]["train_lambda_r"])  # the last step's value, above the mean
    _, m = load_codec(tmp_path / "models" / "rate-codec" / "1")
    assert m.metrics["val_lambda_r"] > 2.0
    assert _train("joint", "--config", cfg, "--out", split, "--set", "export=false") == 0
    assert (
        _train(
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
        **_tiny_pair(model_repo),
        "target_bpp": 0.5,
        "aug_shift": 0.2,
        "export": False,
    }
    cfg = _config(tmp_path, tiny_data, "finetune", **extra)
    assert _train("finetune", "--config", cfg, "--out", tmp_path / "run") == 0
    assert len(measured) == len(given) == 2
    assert all(m is g for m, g in zip(measured, given, strict=True))


def test_resume_continues_exactly(tmp_path: Path, tiny_data: Path) -> None:
    cfg = _config(tmp_path, tiny_data, "codec", scheduler="constant", export=False)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train("codec", "--config", cfg, "--out", straight, "--set", "epochs=2") == 0
    assert _train("codec", "--config", cfg, "--out", split) == 0
    assert [r["step"] for r in _log(split)] == ["2"]
    assert _train("codec", "--config", cfg, "--out", split, "--resume", "--set", "epochs=2") == 0
    assert [(r["epoch"], r["step"]) for r in _log(split)] == [("1", "2"), ("2", "4")]
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(split / "checkpoint.pt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 4
    for k, v in a["modules"]["codec"].items():
        assert torch.allclose(v, b["modules"]["codec"][k], atol=1e-6), k
    # Without --resume an existing run is refused (one-line CLI error, exit status 2).
    assert _train("codec", "--config", cfg, "--out", split) == 2


def test_budget_stopped_run_resumes_with_a_new_budget_and_keeps_its_best_epoch(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How the stage-2 runs were finished: the budget stops a cosine run early, ``--resume`` with
    another budget runs the rest as one run, and the export is the best epoch of all of them."""
    from training.trainers import CodecTask

    scores = iter([3.0, 1.0, 2.0])  # epoch 1 is the best; it was seen before the stop
    monkeypatch.setattr(CodecTask, "score", lambda self, val: next(scores))
    cfg = _config(tmp_path, tiny_data, "codec", scheduler="cosine", epochs=3, export=False)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert _train("codec", "--config", cfg, "--out", straight) == 0
    scores = iter([3.0, 1.0, 2.0])
    # Any epoch overruns a budget of a few microseconds: the run stops after epoch 1 of 3.
    assert _train("codec", "--config", cfg, "--out", cut, "--set", "time_budget_min=1e-7") == 0
    assert [r["epoch"] for r in _log(cut)] == ["1"]
    assert _train("codec", "--config", cfg, "--out", cut, "--resume") == 0
    assert [r["epoch"] for r in _log(cut)] == ["1", "2", "3"]
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert a["best"]["epoch"] == b["best"]["epoch"] == 1
    assert [r["lr_main"] for r in _log(cut)] == [r["lr_main"] for r in _log(straight)]
    for k, v in a["modules"]["codec"].items():
        assert torch.allclose(v, b["modules"]["codec"][k], atol=1e-6), k


def test_resuming_a_finished_run_with_select_last_exports_the_last_epoch(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A rate target's selection can keep an early epoch the run later beat at a hair over the
    rate: ``--resume --set select='"last"'`` exports the last epoch without training more."""
    from training.trainers import CodecTask

    scores = iter([3.0, 1.0])  # epoch 1 is selected
    monkeypatch.setattr(CodecTask, "score", lambda self, val: next(scores))
    cfg = _config(tmp_path, tiny_data, "codec", epochs=2, name="c", version="1")
    run = tmp_path / "run"
    assert _train("codec", "--config", cfg, "--out", run) == 0
    manifest = tmp_path / "models" / "c" / "1" / "manifest.json"
    assert json.loads(manifest.read_text())["training"]["best_epoch"] == 1
    assert _train("codec", "--config", cfg, "--out", run, "--resume") == 0  # select = best
    assert json.loads(manifest.read_text())["training"]["best_epoch"] == 1
    assert _train("codec", "--config", cfg, "--out", run, "--resume", "--set", 'select="last"') == 0
    assert json.loads(manifest.read_text())["training"]["best_epoch"] == 2
    assert [r["epoch"] for r in _log(run)] == ["1", "2"]  # nothing trained again
    last = torch.load(run / "checkpoint.pt", weights_only=False)["modules"]["codec"]
    exported = load_codec_model(manifest.parent)[0].state_dict()
    weights = [k for k, v in last.items() if v.is_floating_point() and k.endswith(".weight")]
    assert len(weights) > 5
    for k in weights:  # exported as float16
        assert torch.allclose(last[k].float(), exported[k].float(), rtol=1e-2, atol=1e-3), k


def test_resume_mid_epoch_after_interrupt(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.trainers import CodecTask

    cfg = _config(
        tmp_path,
        tiny_data,
        "codec",
        scheduler="constant",
        export=False,
        epochs=2,
        checkpoint_every=1,
    )
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert _train("codec", "--config", cfg, "--out", straight) == 0
    real_step, calls = CodecTask.train_step, []

    def flaky(self: CodecTask, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(1)
        if len(calls) == 4:  # epoch 2, second batch: after the step-3 checkpoint
            raise KeyboardInterrupt
        return real_step(self, x, y)

    monkeypatch.setattr(CodecTask, "train_step", flaky)
    assert _train("codec", "--config", cfg, "--out", cut) == 130
    monkeypatch.setattr(CodecTask, "train_step", real_step)
    ck = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == (1, 1, 3)
    assert _train("codec", "--config", cfg, "--out", cut, "--resume") == 0
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["modules"]["codec"]
    b = torch.load(cut / "checkpoint.pt", weights_only=False)["modules"]["codec"]
    for k, v in a.items():
        assert torch.allclose(v, b[k], atol=1e-6), k
    assert _log(straight) == [
        {**r, "time_s": s["time_s"]} for r, s in zip(_log(cut), _log(straight), strict=True)
    ]


def test_sweep_exports_one_codec_per_lambda(tmp_path: Path, tiny_data: Path) -> None:
    cfg = _config(tmp_path, tiny_data, "codec", name="sw", max_steps_per_epoch=1)
    out = tmp_path / "sweep"
    assert _train("codec", "--config", cfg, "--out", out, "--lambdas", "0.001,0.01") == 0
    for lmbda in ("0.001", "0.01"):
        _, m = load_codec(tmp_path / "models" / f"sw-l{lmbda}" / "1")
        assert m.metrics["lmbda"] == float(lmbda)
        assert (out / f"lmbda-{lmbda}" / "log.csv").is_file()


def test_ddp_two_processes_cpu(tmp_path: Path, tiny_data: Path) -> None:
    cfg = _config(tmp_path, tiny_data, "classifier", name="ddp")
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
    assert len(_log(tmp_path / "run")) == 1


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
    cfg = _config(tmp_path, data, "classifier", name="soft", ferplus_soft=0.4)
    assert _train("classifier", "--config", cfg, "--out", tmp_path / "run") == 0
    rows = _log(tmp_path / "run")
    assert float(rows[0]["train_loss"]) > 0 and 0 <= float(rows[0]["val_acc"]) <= 1
