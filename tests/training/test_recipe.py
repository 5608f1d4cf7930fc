"""The classifier recipe: erasing, mixup/cutmix, EMA, flip TTA, CPU bf16, warm start (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli.main import main
from core.artifacts import load_classifier
from core.classifier import ClassifierConfig, FERClassifier
from training import precision
from training.config import load_config
from training.precision import cpu_has_bf16, train_autocast
from training.recipe import (
    ema_weights,
    flip_tta_logits,
    make_ema,
    mix_batch,
    mixed_cross_entropy,
    random_erase,
)


def test_random_erase_off_is_identity_and_on_changes_one_box_per_image() -> None:
    torch.manual_seed(0)
    x = torch.full((8, 1, 48, 48), 0.5)
    assert torch.equal(random_erase(x, 0.0), x)
    out = random_erase(x, 1.0)
    changed = (out != x).flatten(1).sum(1)
    assert (changed > 0).all() and (changed < 48 * 48).all()
    assert out.min() >= 0 and out.max() <= 1


def test_mixup_is_a_convex_combination_and_cutmix_weights_by_area() -> None:
    torch.manual_seed(1)
    x = torch.rand(6, 1, 48, 48)
    y = torch.arange(6)
    same = mix_batch(x, y, "none", 1.0, 1.0)
    assert same[0] is x and same[3] == 1.0
    xm, ya, yb, lam = mix_batch(x, y, "mixup", 1.0, 1.0)
    assert torch.equal(ya, y) and sorted(yb.tolist()) == y.tolist()
    perm = yb  # labels are indices here, so yb is the permutation itself
    assert torch.allclose(xm, lam * x + (1 - lam) * x[perm], atol=1e-6)
    xc, _, yb, lam = mix_batch(x, y, "cutmix", 1.0, 1.0)
    pasted = (xc != x).flatten(1).any(0).sum().item() if lam < 1 else 0
    assert pasted <= round((1 - lam) * 48 * 48)
    assert 0.0 <= lam <= 1.0


def test_mixed_cross_entropy_reduces_to_plain_ce() -> None:
    logits, y = torch.randn(4, 7), torch.tensor([0, 1, 2, 3])
    plain = torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(mixed_cross_entropy(logits, y, y.flip(0), 1.0, 0.0), plain)


def test_ema_exports_a_loadable_classifier_state() -> None:
    model = FERClassifier(ClassifierConfig(width=8))
    ema = make_ema(model, 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update_parameters(model)
    state = ema_weights(ema.state_dict())
    fresh = FERClassifier(ClassifierConfig(width=8))
    fresh.load_state_dict(state)
    assert set(state) == set(model.state_dict())


def test_flip_tta_is_mirror_invariant() -> None:
    torch.manual_seed(2)
    model = FERClassifier(ClassifierConfig(width=8)).eval()
    x = torch.rand(3, 1, 48, 48)
    assert torch.allclose(flip_tta_logits(model, x), flip_tta_logits(model, x.flip(-1)), atol=1e-5)
    with torch.no_grad():  # reusing the caller's forward on x gives the same answer
        assert torch.equal(flip_tta_logits(model, x, model(x)), flip_tta_logits(model, x))


def test_cpu_autocast_runs_bf16_and_off_is_fp32() -> None:
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with train_autocast(True, torch.device("cpu")):
        assert lin(x).dtype == torch.bfloat16
    with train_autocast(False, torch.device("cpu")):
        assert lin(x).dtype == torch.float32


@pytest.mark.parametrize(
    ("key", "value"), [("mix", "blend"), ("ema_decay", 1.0), ("erase_prob", 1.5)]
)
def test_bad_recipe_values_are_refused(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        load_config("classifier", overrides=[f"{key}={json.dumps(value)}"])


def test_recipe_run_exports_the_ema_and_warm_starts_widened_from_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(
        data,
        images=rng.integers(0, 256, (80, 48, 48), dtype=np.uint8),
        labels=np.arange(80) % 7,
        split=np.array(["Training"] * 80),
    )
    common = [
        f"data={json.dumps(str(data))}",
        f"export_dir={json.dumps(str(tmp_path / 'models'))}",
        "width=8", "epochs=1", "batch_size=16", "eval_batch_size=32", "max_steps_per_epoch=2",
        "amp=true", "channels_last=true", "erase_prob=0.5", 'mix="cutmix"', "mix_prob=1.0",
        "ema_decay=0.9", "tta_flip=true", "aug_client=true",
    ]  # fmt: skip
    args = ["train", "classifier", "--device", "cpu", "--out", str(tmp_path / "a")]
    assert main([*args, *(x for c in common for x in ("--set", c))]) == 0
    run = tmp_path / "models" / "fer-resnet18" / "1"
    _, m = load_classifier(run)
    assert "val_acc_ema_tta" in json.dumps(m.metrics)
    warm = [*common, f"init_classifier={json.dumps(str(run))}", "widen_to=12", 'version="2"']
    warm.append('amp="auto"')  # recorded as what ran on this CPU
    args = ["train", "classifier", "--device", "cpu", "--out", str(tmp_path / "b")]
    assert main([*args, *(x for c in warm for x in ("--set", c))]) == 0
    _, m2 = load_classifier(tmp_path / "models" / "fer-resnet18" / "2")
    assert m2.architecture["width"] == 12
    assert m2.training["config"]["init_classifier"] == str(run)
    assert m2.training["config"]["amp"] is cpu_has_bf16()


def test_widening_needs_a_classifier_to_widen() -> None:
    with pytest.raises(ValueError, match="widen_to needs init_classifier"):
        load_config("classifier", overrides=["widen_to=48"])


def test_cpu_bf16_units_are_read_from_cpuinfo_flags(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    assert not cpu_has_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_bf16(info)
    info.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")  # aarch64 layout
    assert cpu_has_bf16(info)
    info.write_text("processor\t: 0\n")  # no flags line at all
    assert not cpu_has_bf16(info)


@pytest.mark.parametrize("has_bf16", [True, False])
def test_amp_auto_follows_the_cpu_and_explicit_settings_are_kept(
    has_bf16: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: has_bf16)
    cpu = torch.device("cpu")
    assert precision.resolve_amp("auto", cpu) is has_bf16
    assert precision.resolve_amp(False, cpu) is False
    assert precision.resolve_amp(True, cpu) is True
    warned = "amp = true on a CPU without bf16 units" in capsys.readouterr().err
    assert warned is not has_bf16


def test_amp_is_auto_by_default_for_the_classifier_and_other_strings_are_refused() -> None:
    assert load_config("classifier")["amp"] == "auto"
    assert load_config("codec")["amp"] is False
    with pytest.raises(ValueError, match="amp"):
        load_config("classifier", overrides=['amp="fast"'])
