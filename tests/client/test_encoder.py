"""Rate control: the best operating point whose measured size fits the byte target."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from client.encoder import EdgeEncoder, OperatingPoint, target_bytes_for
from core.artifacts import Manifest, read_manifest
from core.codec import CodecConfig
from core.preprocess import face_to_tensor
from tests.client.conftest import make_faces


@dataclass
class StubCodec:
    """Payload size = base + 100 * mean intensity: content-adaptive like a real codec."""

    base: int
    codec_id_hex: str
    config: CodecConfig = field(default_factory=lambda: CodecConfig(in_channels=1))
    calls: int = 0

    def encode(self, images: torch.Tensor, merged: bool = True) -> list[bytes]:
        self.calls += 1
        return [b"x" * (self.base + int(100 * img.mean())) for img in images]


def stub_point(base: int, cid: str, bpf: float | None = None) -> OperatingPoint:
    metrics = {} if bpf is None else {"bytes_per_face": bpf}
    m = Manifest(
        name="stub",
        version=cid,
        kind="codec",
        architecture={},
        sha256="0" * 64,
        codec_id=cid,
        metrics=metrics,
    )
    return OperatingPoint(StubCodec(base, cid), m)  # type: ignore[arg-type]


def grey(v: float) -> torch.Tensor:
    return torch.full((1, 48, 48), v)


def test_target_from_bandwidth_budget() -> None:
    assert target_bytes_for(budget_bps=8000, fps=10) == 100
    assert target_bytes_for(target_bytes=60, budget_bps=8000, fps=10) == 60  # stricter wins
    assert target_bytes_for() is None
    with pytest.raises(ValueError):
        target_bytes_for(budget_bps=8000)
    with pytest.raises(ValueError):
        target_bytes_for(target_bytes=0)


def test_picks_largest_fitting_by_measured_size() -> None:
    enc = EdgeEncoder(
        [stub_point(10, "000000aa"), stub_point(40, "000000bb"), stub_point(80, "000000cc")]
    )
    assert enc.metric is None
    face = grey(0.5)  # sizes 60, 90, 130
    assert enc.pick(face, target_bytes=100).size == 90
    assert enc.pick(face, target_bytes=200).codec_id == "000000cc"
    assert enc.pick(face).size == 130  # no target: highest quality
    low = enc.pick(face, target_bytes=20)
    assert low.over_budget and low.size == 60  # nothing fits: the smallest, flagged
    # The size is measured on *this* face: a darker face fits a better point.
    assert enc.pick(grey(0.1), target_bytes=100).codec_id == "000000cc"  # 90 bytes


def test_manifest_order_climbs_from_cheapest_and_stops() -> None:
    pts = [
        stub_point(80, "000000cc", 120.0),
        stub_point(10, "000000aa", 20.0),
        stub_point(40, "000000bb", 60.0),
    ]
    enc = EdgeEncoder(pts)
    assert enc.metric == "bytes_per_face"
    assert [p.codec.codec_id_hex for p in enc.points] == ["000000aa", "000000bb", "000000cc"]
    res = enc.encode_batch(torch.stack([grey(0.5), grey(0.1), grey(1.0)]), target_bytes=100)
    assert [r.size for r in res] == [90, 90, 110]
    assert [r.over_budget for r in res] == [False, False, True]
    # One batched encode per point; face 2 overflowed at "aa" and was not encoded again.
    assert [p.codec.calls for p in enc.points] == [1, 1, 1]
    res = enc.encode_batch(torch.stack([grey(1.0)]), target_bytes=50)
    assert [p.codec.calls for p in enc.points] == [2, 1, 1]  # first overflow ends the climb
    assert res[0].over_budget and res[0].codec_id == "000000aa"
    # Without a target only the best point encodes.
    enc.encode_batch(torch.stack([grey(0.5)]))
    assert [p.codec.calls for p in enc.points] == [2, 1, 2]


def test_real_tiny_codecs_respect_the_target(model_repo: Path) -> None:
    enc = EdgeEncoder.from_repository(model_repo)
    assert enc.refs == ["tiny-codec/1", "tiny-codec/2"]
    face = face_to_tensor(make_faces(1, seed=3)[0])
    sizes = {p.ref: len(p.codec.encode(face.unsqueeze(0))[0]) for p in enc.points}
    big, small = max(sizes.values()), min(sizes.values())
    best = enc.pick(face)
    assert best.size == big and not best.over_budget
    fit = enc.pick(face, target_bytes=small)
    assert fit.size == small and not fit.over_budget
    over = enc.pick(face, target_bytes=small - 1)
    assert over.over_budget and over.size == small
    # The payload names its codec: the server can decode it.
    assert over.codec_id == read_manifest(model_repo / over.codec_ref).codec_id


def test_target_set_at_construction_is_the_default(model_repo: Path) -> None:
    enc = EdgeEncoder.from_repository(model_repo, refs=["tiny-codec/1"], target_bytes=5)
    assert enc.pick(face_to_tensor(make_faces(1)[0])).over_budget


def test_merged_layout_by_default_and_two_strings_on_request(model_repo: Path) -> None:
    from core import bitstream

    face = face_to_tensor(make_faces(1, seed=5)[0])
    merged = EdgeEncoder.from_repository(model_repo, refs=["tiny-codec/1"]).pick(face)
    split_enc = EdgeEncoder.from_repository(model_repo, refs=["tiny-codec/1"])
    split_enc.merged = False
    split = split_enc.pick(face)
    assert len(bitstream.parse(merged.payload).strings) == 1
    assert len(bitstream.parse(split.payload).strings) == 2
    assert merged.size < split.size
    codec = split_enc.points[0].codec
    assert torch.equal(*codec.decode([merged.payload, split.payload]))
