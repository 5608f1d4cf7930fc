from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.preprocess import face_to_tensor, load_image, tensor_to_uint8


def test_resize_gray_range(tmp_path: Path) -> None:
    rgb = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "f.png")
    t = face_to_tensor(tmp_path / "f.png")
    assert t.shape == (1, 48, 48) and t.dtype.is_floating_point
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


def test_uint8_round_trip_is_exact() -> None:
    a = np.arange(48 * 48, dtype=np.uint32).reshape(48, 48) % 256
    t = face_to_tensor(a.astype(np.uint8))
    assert np.array_equal(tensor_to_uint8(t), a)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "x.png")
