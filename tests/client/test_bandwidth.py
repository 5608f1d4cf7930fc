"""Bandwidth summary: JPEG/WebP/raw cost of the faces the client sent."""

from __future__ import annotations

import pytest
from PIL import features

from client.bandwidth import BandwidthMeter, jpeg_size
from core.preprocess import face_to_tensor
from tests.client.conftest import make_faces


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_meter_totals_and_ratios() -> None:
    meter = BandwidthMeter(jpeg_quality=30, webp_quality=30)
    faces = [face_to_tensor(f) for f in make_faces(3)]
    for f in faces:
        meter.add(f, sent_bytes=40)
    s = meter.summary()
    assert (s.faces, s.sent_bytes, s.raw_bytes) == (3, 120, 3 * 48 * 48)
    assert s.jpeg_bytes == sum(jpeg_size(f, 30) for f in faces) > 120
    d = s.to_dict()
    assert d["jpeg_ratio"] == pytest.approx(s.jpeg_bytes / 120)
    assert d["raw_per_face"] == 48 * 48
    assert s.webp_bytes is not None and s.webp_bytes > 0 and d["webp_ratio"] > 0
    text = "\n".join(s.lines())
    assert "faces: 3" in text and "JPEG q=30" in text and "40.0 B/face" in text


def test_quality_is_checked_and_lower_quality_is_smaller() -> None:
    with pytest.raises(ValueError):
        BandwidthMeter(jpeg_quality=0)
    face = face_to_tensor(make_faces(1)[0])
    assert jpeg_size(face, 10) < jpeg_size(face, 90)
    assert BandwidthMeter().summary().lines() == ["faces: 0"]
