"""Smoke test of benchmarks/precision_agreement.py on the tiny models: every release pair gets
a row with its agreement, accuracies and per-stage times (never compared with anything)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import joint_release_repo, random_faces_npz


@pytest.fixture(autouse=True)
def _keep_threads() -> Iterator[None]:
    threads = torch.get_num_threads()  # the script sets torch's process-wide thread count
    yield
    torch.set_num_threads(threads)


def test_precision_agreement_rows(model_repo: Path, tmp_path: Path) -> None:
    from benchmarks import precision_agreement

    root = joint_release_repo(model_repo, tmp_path / "repo")
    data = random_faces_npz(tmp_path / "faces.npz", 12)
    out = tmp_path / "precision.json"
    argv = ["--models", str(root), "--data", str(data), "--batch", "5", "--repeat", "1",
            "--json", str(out)]  # fmt: skip
    assert precision_agreement.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["codec"], r["classifier"]) for r in rows] == [
        ("tiny-codec/1", "tiny-classifier/1"), ("tiny-codec/2", "tiny-classifier/2"),
    ]  # fmt: skip
    for r in rows:
        assert r["faces"] == 12 and 0 <= r["agreement"] <= 1
        assert 0 <= r["acc_fp32"] <= 1 and 0 <= r["acc_bf16"] <= 1 and r["max_dp"] >= 0
        assert set(r["ms_per_face"]) == {"fp32", "bf16"}
        assert all(v > 0 for ms in r["ms_per_face"].values() for v in ms.values())
