"""Resuming trainer runs: exact continuation, new budgets, interrupted epochs, re-export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core.artifacts import load_codec_model
from tests.training.trainer_runs import read_log, tiny_config, train_cli


def test_resume_continues_exactly(tmp_path: Path, tiny_data: Path) -> None:
    cfg = tiny_config(tmp_path, tiny_data, "codec", scheduler="constant", export=False)
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert train_cli("codec", "--config", cfg, "--out", straight, "--set", "epochs=2") == 0
    assert train_cli("codec", "--config", cfg, "--out", split) == 0
    assert [r["step"] for r in read_log(split)] == ["2"]
    assert train_cli("codec", "--config", cfg, "--out", split, "--resume", "--set", "epochs=2") == 0
    assert [(r["epoch"], r["step"]) for r in read_log(split)] == [("1", "2"), ("2", "4")]
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(split / "checkpoint.pt", weights_only=False)
    assert a["global_step"] == b["global_step"] == 4
    for k, v in a["modules"]["codec"].items():
        assert torch.allclose(v, b["modules"]["codec"][k], atol=1e-6), k
    # Without --resume an existing run is refused (one-line CLI error, exit status 2).
    assert train_cli("codec", "--config", cfg, "--out", split) == 2


def test_budget_stopped_run_resumes_with_a_new_budget_and_keeps_its_best_epoch(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How the stage-2 runs were finished: the budget stops a cosine run early, ``--resume`` with
    another budget runs the rest as one run, and the export is the best epoch of all of them."""
    from training.trainers import CodecTask

    scores = iter([3.0, 1.0, 2.0])  # epoch 1 is the best; it was seen before the stop
    monkeypatch.setattr(CodecTask, "score", lambda self, val: next(scores))
    cfg = tiny_config(tmp_path, tiny_data, "codec", scheduler="cosine", epochs=3, export=False)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert train_cli("codec", "--config", cfg, "--out", straight) == 0
    scores = iter([3.0, 1.0, 2.0])
    # Any epoch overruns a budget of a few microseconds: the run stops after epoch 1 of 3.
    assert train_cli("codec", "--config", cfg, "--out", cut, "--set", "time_budget_min=1e-7") == 0
    assert [r["epoch"] for r in read_log(cut)] == ["1"]
    assert train_cli("codec", "--config", cfg, "--out", cut, "--resume") == 0
    assert [r["epoch"] for r in read_log(cut)] == ["1", "2", "3"]
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert a["best"]["epoch"] == b["best"]["epoch"] == 1
    assert [r["lr_main"] for r in read_log(cut)] == [r["lr_main"] for r in read_log(straight)]
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
    cfg = tiny_config(tmp_path, tiny_data, "codec", epochs=2, name="c", version="1")
    run = tmp_path / "run"
    assert train_cli("codec", "--config", cfg, "--out", run) == 0
    manifest = tmp_path / "models" / "c" / "1" / "manifest.json"
    first = json.loads(manifest.read_text())
    assert first["training"]["best_epoch"] == 1
    assert train_cli("codec", "--config", cfg, "--out", run, "--resume") == 0  # select = best
    assert json.loads(manifest.read_text())["training"]["best_epoch"] == 1
    last_flag = ("--set", 'select="last"')
    assert train_cli("codec", "--config", cfg, "--out", run, "--resume", *last_flag) == 0
    second = json.loads(manifest.read_text())
    assert second["training"]["best_epoch"] == 2
    assert second["sha256"] != first["sha256"]  # other weights, not epoch 1's relabelled
    assert [r["epoch"] for r in read_log(run)] == ["1", "2"]  # nothing trained again
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

    cfg = tiny_config(
        tmp_path,
        tiny_data,
        "codec",
        scheduler="constant",
        export=False,
        epochs=2,
        checkpoint_every=1,
    )
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert train_cli("codec", "--config", cfg, "--out", straight) == 0
    real_step, calls = CodecTask.train_step, []

    def flaky(self: CodecTask, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        calls.append(1)
        if len(calls) == 4:  # epoch 2, second batch: after the step-3 checkpoint
            raise KeyboardInterrupt
        return real_step(self, x, y)

    monkeypatch.setattr(CodecTask, "train_step", flaky)
    assert train_cli("codec", "--config", cfg, "--out", cut) == 130
    monkeypatch.setattr(CodecTask, "train_step", real_step)
    ck = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == (1, 1, 3)
    assert train_cli("codec", "--config", cfg, "--out", cut, "--resume") == 0
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["modules"]["codec"]
    b = torch.load(cut / "checkpoint.pt", weights_only=False)["modules"]["codec"]
    for k, v in a.items():
        assert torch.allclose(v, b[k], atol=1e-6), k
    assert read_log(straight) == [
        {**r, "time_s": s["time_s"]} for r, s in zip(read_log(cut), read_log(straight), strict=True)
    ]


def test_training_refuses_to_export_over_a_released_artifact(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    """Clients' bitstreams name a released codec by its weights' checksum: new weights under
    its NAME/VERSION would stop them decoding. Refused before any training, with how to fix."""
    from tests.conftest import copy_with_release

    models = copy_with_release(
        model_repo, tmp_path / "models", {"defaults": ["tiny-codec/1", "tiny-classifier/1"]}
    )
    before = (models / "tiny-codec" / "1" / "weights.safetensors").read_bytes()
    cfg = tiny_config(tmp_path, tiny_data, "codec", name="tiny-codec", version="1")
    run = tmp_path / "run"
    assert train_cli("codec", "--config", cfg, "--out", run) == 2
    assert not (run / "log.csv").exists()  # nothing trained
    assert (models / "tiny-codec" / "1" / "weights.safetensors").read_bytes() == before
    # deleted to be retrained: still released, still refused
    shutil.rmtree(models / "tiny-codec" / "1")
    assert train_cli("codec", "--config", cfg, "--out", run) == 2
    assert not (models / "tiny-codec" / "1").exists()
    assert train_cli("codec", "--config", cfg, "--out", run, "--set", 'version="2b"') == 0


def test_a_sweep_is_refused_before_its_first_point_when_a_later_one_is_released(
    tmp_path: Path, tiny_data: Path, model_repo: Path
) -> None:
    """Not hours later, when the sweep reaches the released point."""
    from tests.conftest import copy_with_release

    groups = {"defaults": ["tiny-codec/1", "tiny-classifier/1"], "old": ["sw-l0.01/1"]}
    models = tmp_path / "models"
    shutil.copytree(model_repo / "tiny-codec" / "2", tmp_path / "staging" / "sw-l0.01" / "1")
    copy_with_release(tmp_path / "staging", models, groups)  # only the released point
    shutil.copytree(model_repo, models, dirs_exist_ok=True)  # and the defaults
    cfg = tiny_config(tmp_path, tiny_data, "codec", name="sw", max_steps_per_epoch=1)
    out = tmp_path / "sweep"
    assert train_cli("codec", "--config", cfg, "--out", out, "--lambdas", "0.001,0.01") == 2
    assert not (out / "lmbda-0.001").exists()  # the first point never started
