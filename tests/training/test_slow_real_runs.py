"""Slow, real runs on FER2013 (``make test-slow``; excluded from ``make test`` and CI).

They train the shipped classifier recipe for a short while on the real archive and check that
it learns (well above the 25 % majority class after 300 steps), and score the bundled baseline
classifier on PublicTest, so a broken data path or a broken recipe shows up on real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from core.artifacts import load_classifier

pytestmark = [pytest.mark.slow, pytest.mark.data]
REPO = Path(__file__).resolve().parents[2]


def test_shipped_classifier_recipe_learns_on_real_faces(tmp_path: Path, fer_npz: Path) -> None:
    sets = {
        "data": str(fer_npz),
        "export_dir": str(tmp_path / "models"),
        "epochs": 3,
        "max_steps_per_epoch": 100,
        "limit_val": 1024,
        "time_budget_min": 0.0,
    }
    args = ["train", "classifier", "--config", str(REPO / "configs/cpu/classifier-v3.toml")]
    args += ["--out", str(tmp_path / "run"), "--device", "cpu"]
    for k, v in sets.items():
        args += ["--set", f"{k}={json.dumps(v)}"]
    assert main(args) == 0
    _, m = load_classifier(tmp_path / "models" / "fer-resnet18" / "3")
    assert m.metrics["val_accuracy"] > 0.35


def test_bundled_baseline_classifier_on_public_test(tmp_path: Path, fer_npz: Path) -> None:
    out = tmp_path / "eval.json"
    args = ["eval", "--data", str(fer_npz), "--split", "PublicTest", "--limit", "1000"]
    args += ["--classifier", "fer-resnet18/3", "--codec", "none", "--baselines", "none"]
    assert main([*args, "--json", str(out)]) == 0
    (raw,) = [r for r in json.loads(out.read_text())["records"] if r["codec"] == "none"]
    assert raw["accuracy_tta"]["fer-resnet18/3"] > 0.65
    assert raw["mirror_agreement"]["fer-resnet18/3"] > 0.8
