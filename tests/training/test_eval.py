"""`fercomp eval` on tiny data with tiny random-weight models (CPU, a few seconds)."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli import eval_cmds
from core.classifier import EXPRESSIONS
from training import baselines as bl
from training import eval_metrics as em


def run_cli(*argv: str) -> int:
    """Run an eval/report subcommand through its own parser (independent of cli.main wiring)."""
    parser = argparse.ArgumentParser()
    eval_cmds.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    args.argv = list(argv)  # cli.main records the command line the same way
    return int(args.func(args) or 0)


def smooth_faces(n: int, side: int = 48, seed: int = 0) -> np.ndarray:
    """Blurry random images: compressible like faces, unlike white noise."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (n, 1, 6, 6)).astype(np.float32))
    up = torch.nn.functional.interpolate(coarse, size=(side, side), mode="bicubic")
    return up.clamp(0, 255).round().to(torch.uint8)[:, 0].numpy()


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    n = 40
    split = np.array(["PublicTest"] * 32 + ["Training"] * (n - 32))
    labels = np.arange(n, dtype=np.int64) % len(EXPRESSIONS)
    np.savez(path, images=smooth_faces(n), labels=labels, split=split)
    return path


@pytest.fixture(scope="module")
def eval_doc(tiny_npz: Path, model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval")
    rc = run_cli(
        "eval",
        "--data", str(tiny_npz),
        "--models", str(model_repo),
        "--codec", "tiny-codec/1",
        "--codec", str(model_repo / "tiny-codec" / "2"),  # a folder works as well as a ref
        "--classifier", "tiny-classifier/1",
        "--pair", "tiny-codec/2=tiny-classifier/2",
        "--family", "joint=tiny-codec/2",
        "--baselines", "jpeg,webp",
        "--qualities", "10,50",
        "--device", "cpu",
        "--batch-size", "16",  # several batches with a remainder
        "--json", str(out / "eval.json"),
        "--samples-png", str(out / "grid.png"),
    )  # fmt: skip
    assert rc == 0
    assert (out / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc: dict = json.loads((out / "eval.json").read_text())
    return doc


def test_eval_json_schema(eval_doc: dict) -> None:
    d = eval_doc
    assert d["schema"] == "fercomp-eval/1"
    assert d["split"] == "PublicTest" and d["n"] == 32 and d["image_size"] == [48, 48]
    assert d["classifiers"] == ["tiny-classifier/1", "tiny-classifier/2"]
    assert d["primary_classifier"] == "tiny-classifier/1"
    assert d["device"] == "cpu" and isinstance(d["created"], str) and "eval" in d["command"]
    assert set(d["baseline_settings"]) == {"jpeg", "webp"}
    names = [r["name"] for r in d["records"]]
    assert names == [
        "uncompressed", "jpeg-q10", "jpeg-q50", "webp-q10", "webp-q50",
        "tiny-codec/1", "tiny-codec/2",
    ]  # fmt: skip
    for r in d["records"]:
        assert r["codec"] in {"none", "jpeg", "webp", "avif", "learned"}
        assert isinstance(r["bytes_per_face"], float) and r["bytes_per_face"] > 0
        assert r["bytes_min"] <= r["bytes_per_face"] <= r["bytes_max"]
        assert r["bpp"] == pytest.approx(8 * r["bytes_per_face"] / (48 * 48))
        assert 0.0 <= r["ms_ssim"] <= 1.0 + 1e-6
        assert set(r["accuracy"]) == set(d["classifiers"]) == set(r["macro_f1"])
        assert all(0.0 <= v <= 1.0 for v in [*r["accuracy"].values(), *r["macro_f1"].values()])
        assert set(r["accuracy_tta"]) == set(r["mirror_agreement"]) == set(d["classifiers"])
        assert all(0.0 <= v <= 1.0 for v in r["mirror_agreement"].values())
        if r["codec"] == "none":
            assert r["psnr"] is None and r["bytes_per_face"] == 48 * 48
        else:
            assert isinstance(r["psnr"], float) and 0 < r["psnr"] <= em.PSNR_CAP_DB


def test_learned_and_baseline_records(eval_doc: dict) -> None:
    recs = {r["name"]: r for r in eval_doc["records"]}
    one, two = recs["tiny-codec/1"], recs["tiny-codec/2"]
    for r in (one, two):
        assert r["codec"] == "learned" and r["quality"] is None
        assert r["bytes_min"] > 16  # the container header alone is 16 bytes
        assert len(r["codec_id"]) == 8
    assert one["artifact"] == "tiny-codec/1" and one["family"] == "tiny"  # name prefix
    assert one["paired_classifier"] is None
    assert two["family"] == "joint" and two["paired_classifier"] == "tiny-classifier/2"
    jpeg = recs["jpeg-q10"]
    assert jpeg["codec"] == "jpeg" and jpeg["quality"] == 10 and jpeg["family"] == "jpeg"
    assert jpeg["artifact"] is None
    assert recs["jpeg-q50"]["bytes_per_face"] > jpeg["bytes_per_face"]
    assert recs["jpeg-q50"]["psnr"] > jpeg["psnr"]


def test_eval_on_folder_of_larger_pngs(tmp_path: Path, model_repo: Path) -> None:
    faces = smooth_faces(8, side=64, seed=1)
    for i, face in enumerate(faces):
        d = tmp_path / "data" / "test" / EXPRESSIONS[i % 3]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face).save(d / f"{i}.png")
    out = tmp_path / "eval.json"
    rc = run_cli(
        "eval", "--data", str(tmp_path / "data"), "--split", "PublicTest",
        "--models", str(model_repo), "--codec", "tiny-codec/1",
        "--classifier", "tiny-classifier/1", "--baselines", "jpeg", "--qualities", "30",
        "--limit", "5", "--device", "cpu", "--json", str(out),
    )  # fmt: skip
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["n"] == 5 and doc["limit"] == 5 and doc["image_size"] == [48, 48]
    assert [r["name"] for r in doc["records"]] == ["uncompressed", "jpeg-q30", "tiny-codec/1"]


def test_default_models_from_repository(tiny_npz: Path, model_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    rc = run_cli(
        "eval", "--data", str(tiny_npz), "--models", str(model_repo), "--baselines", "none",
        "--limit", "4", "--device", "cpu", "--json", str(out),
    )  # fmt: skip
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["classifiers"] == ["tiny-classifier/1"]
    assert [r["name"] for r in doc["records"]] == ["uncompressed", "tiny-codec/1"]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--baselines", "gif"], "unknown baseline"),
        (["--qualities", "0,50"], "1..100"),
        (["--qualities", "high"], "integers"),
        (["--codec", "no-such-codec/1"], "no artifact"),
        (["--pair", "x"], "CODEC=CLASSIFIER"),
        (["--split", "Nope"], "split"),
    ],
)
def test_user_errors(tiny_npz: Path, model_repo: Path, tmp_path: Path, argv, match) -> None:
    base = ["eval", "--data", str(tiny_npz), "--models", str(model_repo), "--device", "cpu"]
    with pytest.raises(ValueError, match=match):
        run_cli(*base, "--json", str(tmp_path / "x.json"), *argv)


def test_baseline_roundtrip_and_avif() -> None:
    faces = smooth_faces(4)
    names = ["jpeg", "webp"] + (["avif"] if bl.avif_available() else [])
    for name in names:
        decoded, sizes = bl.roundtrip(faces, name, 50, workers=2)
        assert decoded.shape == faces.shape and decoded.dtype == np.uint8
        assert (sizes > 0).all()
        assert sizes[0] == len(bl.encode_one(faces[0], name, 50))  # whole file, headers too
        mse = ((decoded.astype(float) - faces) ** 2).mean()
        assert 10 * math.log10(255**2 / mse) > 25


def test_metrics_sanity() -> None:
    x = torch.from_numpy(smooth_faces(3)).unsqueeze(1).float()
    assert em.ms_ssim_per_face(x, x).numpy() == pytest.approx(1.0, abs=1e-5)
    assert em.psnr_per_face(x, x).tolist() == pytest.approx([em.PSNR_CAP_DB] * 3)
    noisy = (x + 8 * torch.randn_like(x)).clamp(0, 255).round()
    assert (em.ms_ssim_per_face(x, noisy) < 1).all()
    assert em.psnr_per_face(x, noisy).mean() == pytest.approx(30.3, abs=1.5)
    labels, preds = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    assert em.accuracy(labels, preds) == pytest.approx(0.6)
    # F1 per class: 0 -> 0.5, 1 -> 0.8, 2 -> 0.0
    assert em.macro_f1(labels, preds) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_pair_and_family_from_manifest(tiny_npz: Path, model_repo: Path, tmp_path: Path) -> None:
    """What `fercomp train joint` records: trainer name and the jointly trained classifier."""
    from core.artifacts import save_codec
    from core.codec import FaceHyperprior
    from tests.conftest import TINY_CODEC

    repo = tmp_path / "models"
    shutil.copytree(model_repo, repo)
    training = {"trainer": "joint", "classifier_artifact": "tiny-classifier/2"}
    save_codec(FaceHyperprior(TINY_CODEC), repo / "c-l0.1" / "1", "c-l0.1", "1", training=training)
    lost = {"trainer": "joint", "classifier_artifact": "gone/1"}
    save_codec(FaceHyperprior(TINY_CODEC), repo / "lost" / "1", "lost", "1", training=lost)
    out = tmp_path / "eval.json"
    with pytest.warns(UserWarning, match="gone/1"):
        run_cli(
            "eval", "--data", str(tiny_npz), "--models", str(repo), "--baselines", "none",
            "--codec", str(repo / "c-l0.1" / "1"), "--codec", "lost/1",
            "--classifier", "tiny-classifier/1", "--limit", "4", "--device", "cpu",
            "--json", str(out),
        )  # fmt: skip
    recs = {r["name"]: r for r in json.loads(out.read_text())["records"]}
    assert recs["c-l0.1/1"]["family"] == "joint"
    assert recs["c-l0.1/1"]["paired_classifier"] == "tiny-classifier/2"
    assert recs["lost/1"]["paired_classifier"] is None
    with pytest.raises(ValueError, match="paired classifier 'gone/1'"):
        run_cli(
            "eval", "--data", str(tiny_npz), "--models", str(repo), "--baselines", "none",
            "--codec", "tiny-codec/1", "--pair", "tiny-codec=gone/1", "--limit", "4",
            "--device", "cpu", "--json", str(out),
        )  # fmt: skip


def test_mirror_agreement_and_tta_of_a_mirror_symmetric_classifier() -> None:
    """A classifier that only sees the mirror-symmetric part of a face agrees with itself on
    every mirrored face, and its flip-TTA accuracy equals its plain accuracy."""
    from training.eval import Evaluator

    class Symmetric(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            s = (x + x.flip(-1)).flatten(1)
            return torch.stack([s[:, i * 300 : (i + 1) * 300].sum(1) for i in range(7)], 1)

    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (20, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, 20)
    ev = Evaluator(faces, labels, {"sym": Symmetric()}, torch.device("cpu"), batch_size=8)
    fields, _ = ev.uncompressed()
    assert fields["mirror_agreement"]["sym"] == 1.0
    assert fields["accuracy_tta"]["sym"] == fields["accuracy"]["sym"]
