"""Smoke tests of the client benchmarks (benchmarks/rate_control.py, mirror_agreement.py): each
runs end to end on a few synthetic faces and tiny models and writes its JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from benchmarks import mirror_agreement, rate_control
from tests.client.conftest import REPO_MODELS


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("FERCOMP_"):
            monkeypatch.delenv(key)
    yield


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    xx = np.mgrid[0:48, 0:48][1]
    images = np.stack(
        [
            np.clip(
                128 + 60 * np.sin(xx / rng.uniform(3, 9) + i) + rng.normal(0, 8, (48, 48)), 0, 255
            )
            for i in range(10)
        ]
    ).astype(np.uint8)
    path = tmp_path / "faces.npz"
    np.savez(
        path,
        images=images,
        labels=np.arange(10) % 7,
        split=np.array(["Training"] * 2 + ["PublicTest"] * 8),
    )
    return path


def test_rate_control_before_and_after(tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "rc.json"
    argv = ["--data", str(tiny_npz), "--faces", "0", "--models", str(REPO_MODELS),
            "--target", "120", "--target", "300", "--json", str(out)]  # fmt: skip
    assert rate_control.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["target"], r["candidates"]) for r in rows] == [
        (t, c) for t in (120, 300) for c in ("default codec", "release points")
    ]
    for r in rows:
        assert r["faces"] == 8 and r["mean_bytes"] > 0 and r["served"] is None
        if r["candidates"] == "release points":
            assert r["over"] == 0 and r["max_bytes"] <= r["target"]
    assert set(rows[0]["codecs"]) == {"fer-l0.025/2"}


def test_mirror_agreement_rows(model_repo: Path, tiny_npz: Path, tmp_path: Path) -> None:
    out = tmp_path / "mirror.json"
    argv = ["--data", str(tiny_npz), "--models", str(model_repo), "--json", str(out)]
    assert mirror_agreement.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["client"] for r in rows] == ["canonical orientation", "as given"]
    canon, given = rows
    assert canon["faces"] == 8 and canon["same_bitstreams"] == 8 and canon["agreeing"] == 8
    assert canon["bytes_faces"] == canon["bytes_mirrors"]
    assert given["flipped"] == "0 of 16" and canon["flipped"] == "8 of 16"
    assert 0 <= canon["accuracy_faces"] <= 1 and canon["bytes_per_face"] > 0
