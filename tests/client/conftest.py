"""Client test fixtures: a fake FerService on a free port and tiny face images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.artifacts import load_codec
from core.codec import FaceCodec
from tests.client.fake_server import FakeFerServicer, running_server


@pytest.fixture(scope="module")
def fake_server(model_repo: Path) -> Iterator[tuple[str, FakeFerServicer]]:
    """(target, servicer) shared by a test module; never fails calls."""
    servicer = FakeFerServicer(model_repo)
    with running_server(servicer) as target:
        yield target, servicer


@pytest.fixture(scope="module")
def tiny_codec(model_repo: Path) -> FaceCodec:
    return load_codec(model_repo / "tiny-codec" / "1")[0]


def make_faces(n: int, seed: int = 0, size: int = 48) -> list[Image.Image]:
    """Distinct grayscale images: a smooth gradient plus noise (cheap to encode)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(n):
        base = 128 + 60 * np.sin(xx / rng.uniform(3, 9)) * np.cos(yy / rng.uniform(3, 9))
        arr = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(arr, mode="L"))
    return out


@pytest.fixture
def faces() -> list[Image.Image]:
    return make_faces(6)
