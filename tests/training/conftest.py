"""Fixtures of the trainer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


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
