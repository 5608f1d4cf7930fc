"""client/slim_install.py: what it deletes from an edge venv, what it keeps, and that its
check runs the client's own code (and fails where that cannot work)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from client import slim_install
from client.faces import CASCADE_FILE

REPO = Path(__file__).resolve().parents[2]
KEPT = (
    "onnxruntime/__init__.py",
    "onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so",
    "onnxruntime/capi/libonnxruntime_providers_shared.so",
    "numpy/testing/__init__.py",
    "numpy/core/_multiarray_umath.so",
    f"cv2/data/{CASCADE_FILE}",
    "cv2/data/__init__.py",
)
REMOVED = (
    "onnxruntime/capi/libonnxruntime.so.1.32.0",
    "onnxruntime/transformers/optimizer.py",
    "onnxruntime/tools/symbolic_shape_infer.py",
    "onnxruntime/quantization/quantize.py",
    "onnxruntime/datasets/mul_1.onnx",
    "onnxruntime/backend/backend.py",
    "numpy/tests/test_public_api.py",
    "numpy/core/tests/test_umath.py",
    "numpy/core/tests/__pycache__/test_umath.cpython-311.pyc",
    "numpy/f2py/tests/src/tests/case.f90",  # a tests folder in a tests folder: counted once
    "numpy/testing/tests/test_utils.py",
    "cv2/data/haarcascade_eye.xml",
    "cv2/data/haarcascade_frontalface_alt2.xml",
)


def fake_venv(root: Path) -> Path:
    site = root / "lib" / "python3.11" / "site-packages"
    for rel in KEPT + REMOVED:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(b"x" * 1000)
    return site


def test_slim_removes_what_the_client_never_loads(tmp_path: Path) -> None:
    site = fake_venv(tmp_path)
    removed = slim_install.slim(tmp_path)
    assert all((site / rel).exists() for rel in KEPT)
    assert not any((site / rel).exists() for rel in REMOVED)
    assert sum(size for _, _, size in removed) == 1000 * len(REMOVED)
    assert slim_install.slim(tmp_path) == []  # nothing left to do the second time


def test_dry_run_deletes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = fake_venv(tmp_path)
    assert slim_install.main([str(tmp_path), "--dry-run"]) == 0
    assert all((site / rel).exists() for rel in KEPT + REMOVED)
    assert f"would remove {1000 * len(REMOVED) / 2**20:.1f} MiB" in capsys.readouterr().out


def test_check_runs_the_client_on_every_edge_bundle() -> None:
    """With this environment's Python (which has the client's dependencies) and the bundled
    models: every codec with an edge bundle encodes a face, the face detector runs."""
    slim_install.check(Path(sys.prefix), REPO / "models")


def test_check_fails_without_a_codec_to_run(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no codec with an edge bundle"):
        slim_install.check(Path(sys.prefix), tmp_path)
