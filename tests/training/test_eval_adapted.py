"""`fercomp eval --adapted webp=CLASSIFIER`: the "webp+adapted" curve beside plain WebP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.classifier import EXPRESSIONS
from tests.training.test_eval import run_cli, smooth_faces
from training.report import family_curves, write_report


@pytest.fixture(scope="module")
def faces_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    labels = np.arange(24, dtype=np.int64) % len(EXPRESSIONS)
    np.savez(path, images=smooth_faces(24), labels=labels, split=np.array(["PublicTest"] * 24))
    return path


def _eval(faces_npz: Path, model_repo: Path, out: Path, *extra: str) -> dict:
    rc = run_cli(
        "eval", "--data", str(faces_npz), "--models", str(model_repo), "--codec", "none",
        "--classifier", "tiny-classifier/1", "--baselines", "jpeg,webp", "--qualities", "10,50",
        "--device", "cpu", "--json", str(out), *extra,
    )  # fmt: skip
    assert rc == 0
    doc: dict = json.loads(out.read_text())
    return doc


def test_adapted_curve_reuses_the_webp_points_with_the_adapted_classifier(
    faces_npz: Path, model_repo: Path, tmp_path: Path
) -> None:
    doc = _eval(faces_npz, model_repo, tmp_path / "e.json", "--adapted", "webp=tiny-classifier/2")
    assert doc["adapted_classifiers"] == {"webp": "tiny-classifier/2"}
    assert doc["primary_classifier"] == "tiny-classifier/1"
    recs = {r["name"]: r for r in doc["records"]}
    assert [n for n in recs if n.startswith("webp")] == [
        "webp-q10", "webp-q10+adapted", "webp-q50", "webp-q50+adapted",
    ]  # fmt: skip
    assert not any(n.startswith("jpeg") and n.endswith("+adapted") for n in recs)
    for q in (10, 50):
        plain, adapted = recs[f"webp-q{q}"], recs[f"webp-q{q}+adapted"]
        assert adapted["family"] == "webp+adapted" and adapted["codec"] == "webp"
        assert adapted["paired_classifier"] == "tiny-classifier/2"
        assert plain["paired_classifier"] is None
        # same files, same pixels: only the reader differs
        for key in ("bytes_per_face", "psnr", "ms_ssim", "accuracy", "quality"):
            assert adapted[key] == plain[key]
    curves = family_curves(doc["records"], doc["primary_classifier"])
    rates, acc = curves["webp+adapted"]
    assert rates == curves["webp"][0]
    assert acc == [recs[f"webp-q{q}"]["accuracy"]["tiny-classifier/2"] for q in (10, 50)]
    assert curves["webp"][1] == [
        recs[f"webp-q{q}"]["accuracy"]["tiny-classifier/1"] for q in (10, 50)
    ]
    written = write_report([tmp_path / "e.json"], tmp_path / "report")
    assert "webp+adapted" in written[0].read_text()


def test_adapted_needs_an_evaluated_baseline(
    faces_npz: Path, model_repo: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="avif is not among the baselines"):
        _eval(faces_npz, model_repo, tmp_path / "e.json", "--adapted", "avif=tiny-classifier/2")
    with pytest.raises(ValueError, match="--adapted expects BASELINE=CLASSIFIER"):
        _eval(faces_npz, model_repo, tmp_path / "e.json", "--adapted", "webp")
