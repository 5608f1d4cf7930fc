import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.classifier import EXPRESSIONS
from tests.training.test_eval import run_cli, smooth_faces
from training.client_variation import ClientVariation, camera, lighting, perturb_faces, sharpness


@pytest.fixture
def test_npz(tmp_path: Path) -> Path:
    path = tmp_path / "faces.npz"
    labels = np.arange(12, dtype=np.int64) % len(EXPRESSIONS)
    np.savez(path, images=smooth_faces(12), labels=labels, split=np.array(["PublicTest"] * 12))
    return path


def test_perturbation_is_seeded_and_changes_every_face() -> None:
    faces = smooth_faces(16)
    a, b = perturb_faces(faces, seed=3), perturb_faces(faces, seed=3)
    assert a.dtype == np.uint8 and a.shape == faces.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, perturb_faces(faces, seed=4))
    diff = np.abs(a.astype(int) - faces.astype(int)).reshape(16, -1).mean(1)
    assert (diff > 1.0).all()  # no face left as it was


def test_identity_ranges_leave_faces_unchanged() -> None:
    faces = smooth_faces(4)
    same = ClientVariation(
        brightness=(1, 1), contrast=(1, 1), gamma=(1, 1), sharpen=(0, 0), zoom=(1, 1), shift=0.0
    )
    out = perturb_faces(faces, seed=0, v=same)
    assert np.abs(out.astype(int) - faces.astype(int)).max() <= 1  # resampling rounding only


def _laplacian_energy(x: torch.Tensor) -> float:
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1]
    lap = lap - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return float(lap.abs().mean())


def test_sharpening_adds_detail_and_zero_amount_is_identity() -> None:
    torch.manual_seed(0)
    x = 0.25 + 0.5 * torch.rand(8, 1, 48, 48)  # detailed, and far from the clamp
    keep = ClientVariation(sharpen=(0.0, 0.0))
    torch.testing.assert_close(sharpness(x, keep), x)
    strong = ClientVariation(sharpen=(1.0, 1.0))
    assert _laplacian_energy(sharpness(x, strong)) > 1.3 * _laplacian_energy(x)


def test_camera_stays_in_range_and_keeps_the_dtype() -> None:
    x = torch.rand(8, 1, 48, 48, dtype=torch.float32)
    assert camera(x).shape == x.shape and camera(x).dtype == x.dtype
    y = lighting(x)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # brightness 0.6-1.4 moves the mean of at least some faces by a few percent
    assert (y.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))).abs().max() > 0.02


def test_eval_perturb_client_records_what_it_did(
    test_npz: Path, model_repo: Path, tmp_path: Path
) -> None:
    docs = {}
    for mode in ("none", "client"):
        out = tmp_path / f"{mode}.json"
        rc = run_cli(
            "eval", "--data", str(test_npz), "--models", str(model_repo), "--baselines", "webp",
            "--qualities", "10", "--device", "cpu", "--perturb", mode, "--json", str(out),
        )  # fmt: skip
        assert rc == 0
        docs[mode] = json.loads(out.read_text())
    assert docs["none"]["perturb"] is None
    p = docs["client"]["perturb"]
    assert p["kind"] == "client" and p["seed"] == 0 and p["brightness"] == [0.6, 1.4]
    # different pixels: the WebP files of the perturbed faces are not the same size
    size = {m: d["records"][1]["bytes_per_face"] for m, d in docs.items()}
    assert size["none"] != size["client"]
