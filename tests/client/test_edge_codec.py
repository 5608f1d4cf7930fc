"""The edge codec (ONNX Runtime + numpy, no torch) encodes exactly what the server decodes.

A face the edge encodes must decode on the server (``FaceCodec.decode_latents``) to exactly
the latents the edge coded, and cost the bytes the torch encoder spends (±1 %). Checked on a
tiny random codec exported here, on real FER2013 faces with the bundled default codec (skips
without the archive), and on the committed bundles of every release codec.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from client.edge_codec import EdgeCodec, NoEncoderError, load_encoder_codec
from client.encoder import EdgeEncoder
from core import bitstream
from core.artifacts import load_codec
from core.edge_codec import (
    ANALYSIS_FILE,
    BUNDLE_FILE,
    BUNDLE_FORMAT,
    DEFAULT_ALIGN_LOG2,
    EDGE_DIR,
    EdgeBundleError,
    has_bundle,
    pad_replicate,
    read_bundle,
)
from core.edge_export import check_faces, export_edge, save_tables
from core.face_codec import FaceCodec, latent_tables_of
from core.latent_tables import TABLES_FILE, LatentTables, v2_latents
from core.manifest import ModelRepository, read_manifest
from core.release import listed_refs

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def edge_repo(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny repository whose tiny-codec/1 has an edge bundle."""
    root = tmp_path_factory.mktemp("edge") / "models"
    shutil.copytree(model_repo, root)
    faces, source = check_faces(None, 24)
    export_edge(root / "tiny-codec" / "1", faces, source)
    return root


def faces_of(n: int, seed: int = 0) -> np.ndarray:
    return check_faces(None, n, seed=seed)[0]


def assert_decodes_to_what_the_edge_coded(codec: FaceCodec, edge: EdgeCodec, x: np.ndarray) -> None:
    payloads, lat = edge.encode_latents(x)
    containers = [codec.parse(p) for p in payloads]
    assert all(c.header.version == bitstream.FORMAT_V2 for c in containers)
    decoded = codec.decode_latents(containers).double().numpy()
    mismatching = int((decoded != lat.y_hat).any(axis=(1, 2, 3)).sum())
    assert mismatching == 0, f"{mismatching} of {len(x)} faces decode to other latents"
    torch_bytes = sum(len(p) for p in codec.encode(torch.from_numpy(x)))
    edge_bytes = sum(len(p) for p in payloads)
    assert abs(edge_bytes / torch_bytes - 1) <= 0.01, (edge_bytes, torch_bytes)


def test_export_writes_a_checked_bundle(edge_repo: Path) -> None:
    art = edge_repo / "tiny-codec" / "1"
    info = json.loads((art / EDGE_DIR / BUNDLE_FILE).read_text())
    m = read_manifest(art)
    assert info["format"] == BUNDLE_FORMAT
    assert info["source"]["sha256"] == m.sha256 and info["source"]["codec_id"] == m.codec_id
    assert info["config"]["align_log2"] == DEFAULT_ALIGN_LOG2 and info["analysis"]["opset"] == 17
    assert set(info["files"]) == {ANALYSIS_FILE, TABLES_FILE}
    check = info["check"]
    assert check["faces"] == 24 and check["decode_mismatches"] == 0
    assert check["y_max_abs_diff"] < 1e-4 and check["z_max_abs_diff"] < 1e-4
    assert check["symbols_match_fraction"] >= 0.9
    assert abs(check["bytes_ratio_edge_to_torch"] - 1) <= 0.01
    assert {"torch", "onnx", "onnxruntime"} <= set(info["versions"])
    assert not any(p.name.startswith(".") for p in art.iterdir())  # no staging left behind
    assert has_bundle(art) and not has_bundle(edge_repo / "tiny-codec" / "2")


def test_export_is_reproducible(edge_repo: Path, tmp_path: Path) -> None:
    """The same codec gives byte-identical files: a re-export changes nothing in git."""
    art = tmp_path / "tiny-codec" / "1"
    shutil.copytree(edge_repo / "tiny-codec" / "1", art)
    before = json.loads((art / EDGE_DIR / BUNDLE_FILE).read_text())["files"]
    again = export_edge(art, *check_faces(None, 2))
    assert again["files"] == before


def test_default_alignment_is_the_codecs() -> None:
    from core.codec import ALIGN_LOG2

    assert DEFAULT_ALIGN_LOG2 == ALIGN_LOG2


def test_onnx_weights_are_half_and_the_analysis_matches_torch(edge_repo: Path) -> None:
    import onnx

    art = edge_repo / "tiny-codec" / "1"
    proto = onnx.load(str(art / EDGE_DIR / ANALYSIS_FILE))
    kinds = {i.name: i.data_type for i in proto.graph.initializer}
    # Conv weights are the artifact's float16 values; GDN's effective parameters stay float32.
    assert kinds["g_a.0.weight.fp16"] == onnx.TensorProto.FLOAT16
    assert all(kinds[k] == onnx.TensorProto.FLOAT for k in kinds if k.endswith(".gamma"))
    codec, _ = load_codec(art)
    edge = EdgeCodec.load(art)
    x = faces_of(8)
    y, z = edge.analyse(x)
    with torch.no_grad():
        xp = torch.from_numpy(pad_replicate(x, edge.align_log2))
        y_t = codec.model.g_a(xp)
        z_t = codec.model.h_a(y_t)
    assert np.abs(y - y_t.numpy()).max() < 1e-4 and np.abs(z - z_t.numpy()).max() < 1e-4


def test_v2_latents_are_the_torch_encoders(edge_repo: Path) -> None:
    """The numpy half of the edge encoder gives FaceCodec._encode_v2's strings, bit for bit."""
    codec, _ = load_codec(edge_repo / "tiny-codec" / "1")
    edge = EdgeCodec.load(edge_repo / "tiny-codec" / "1")
    x = torch.from_numpy(faces_of(6, seed=2))
    with torch.no_grad():
        y = codec.model.g_a(torch.from_numpy(pad_replicate(x.numpy(), edge.align_log2)))
        z = codec.model.h_a(y)
    lat = v2_latents(edge.tables, y.numpy(), z.numpy())
    ours = [
        edge._coder.encode(lat.z_symbols[i], lat.y_symbols[i], lat.indexes[i]) for i in range(6)
    ]
    assert ours == codec._encode_v2(y, z)


def test_edge_bitstreams_decode_to_the_edges_latents(edge_repo: Path) -> None:
    art = edge_repo / "tiny-codec" / "1"
    codec, _ = load_codec(art)
    edge = EdgeCodec.load(art)
    assert edge.codec_id == codec.codec_id
    assert_decodes_to_what_the_edge_coded(codec, edge, faces_of(32, seed=1))
    # Not a multiple of the alignment: the header says the size, padding is cropped off.
    x = faces_of(2)[:, :, :40, :36]
    payload = edge.encode(x)[0]
    h = bitstream.parse(payload).header
    assert (h.height, h.width, h.padded_size) == (40, 36, (64, 64))
    assert codec.decode([payload])[0].shape == (1, 40, 36)


def test_synthetic_face_with_the_bundled_default_codec() -> None:
    """The committed bundle of the default codec, on one synthetic face (no data needed)."""
    repo = ModelRepository(MODELS)
    art = repo.path(repo.defaults()["codec"])
    assert_decodes_to_what_the_edge_coded(load_codec(art)[0], EdgeCodec.load(art), faces_of(1))


@pytest.mark.data
def test_real_faces_with_the_bundled_default_codec(fer_npz: Path) -> None:
    repo = ModelRepository(MODELS)
    art = repo.path(repo.defaults()["codec"])
    x, _ = check_faces(fer_npz, 256)
    assert_decodes_to_what_the_edge_coded(load_codec(art)[0], EdgeCodec.load(art), x)


def test_every_release_codec_ships_a_verified_bundle_with_a_clean_check() -> None:
    refs = listed_refs(MODELS)
    repo = ModelRepository(MODELS)
    codecs = [r for r in refs if read_manifest(repo.path(r)).kind == "codec"]
    assert codecs
    for ref in codecs:
        bundle = read_bundle(repo.path(ref))  # checksums, source sha256, config
        check = bundle.info["check"]
        assert check["decode_mismatches"] == 0, ref
        assert check["symbols_match_fraction"] >= 0.99, ref
        assert abs(check["bytes_ratio_edge_to_torch"] - 1) <= 0.01, ref
        size = sum(f["bytes"] for f in bundle.info["files"].values())
        assert size < 4_000_000, f"{ref}: edge bundle of {size:,} B"


def test_tables_round_trip_exactly(edge_repo: Path, tmp_path: Path) -> None:
    codec, _ = load_codec(edge_repo / "tiny-codec" / "1")
    tables = latent_tables_of(codec.model)
    save_tables(tables, tmp_path / TABLES_FILE)
    back = LatentTables.load(tmp_path / TABLES_FILE)
    for a, b in zip(tables.hs_weights, back.hs_weights, strict=True):
        assert a.dtype == b.dtype == np.float64 and np.array_equal(a, b)
    assert np.array_equal(tables.scale_table, back.scale_table)
    assert np.array_equal(tables.y.cdfs, back.y.cdfs)
    assert np.array_equal(tables.z_medians, back.z_medians)


def _copy(edge_repo: Path, tmp_path: Path) -> Path:
    art = tmp_path / "tiny-codec" / "1"
    shutil.copytree(edge_repo / "tiny-codec" / "1", art)
    return art


def test_a_tampered_file_is_refused(edge_repo: Path, tmp_path: Path) -> None:
    art = _copy(edge_repo, tmp_path)
    onnx_file = art / EDGE_DIR / ANALYSIS_FILE
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")
    with pytest.raises(EdgeBundleError, match="checksum mismatch"):
        EdgeCodec.load(art)
    with pytest.raises(EdgeBundleError, match="checksum mismatch"):
        load_encoder_codec(art)  # a broken bundle is an error, not a silent torch fallback


def test_a_bundle_of_other_weights_is_refused(edge_repo: Path, tmp_path: Path) -> None:
    art = _copy(edge_repo, tmp_path)
    other = read_manifest(edge_repo / "tiny-codec" / "2")
    m = json.loads((art / "manifest.json").read_text())
    m.update(sha256=other.sha256, codec_id=other.codec_id)  # as if re-exported since
    (art / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgeBundleError, match="made from other weights"):
        read_bundle(art)


def test_a_missing_file_and_a_foreign_format_are_refused(edge_repo: Path, tmp_path: Path) -> None:
    art = _copy(edge_repo, tmp_path)
    (art / EDGE_DIR / TABLES_FILE).unlink()
    with pytest.raises(EdgeBundleError, match="missing"):
        read_bundle(art)
    info = json.loads((edge_repo / "tiny-codec" / "1" / EDGE_DIR / BUNDLE_FILE).read_text())
    (art / EDGE_DIR / BUNDLE_FILE).write_text(json.dumps(info | {"format": "other/9"}))
    with pytest.raises(EdgeBundleError, match="format"):
        read_bundle(art)


def test_the_client_picks_the_bundle_else_torch(edge_repo: Path) -> None:
    edge, m = load_encoder_codec(edge_repo / "tiny-codec" / "1", threads=1)
    assert isinstance(edge, EdgeCodec) and m.ref == "tiny-codec/1"
    torch_codec, m2 = load_encoder_codec(edge_repo / "tiny-codec" / "2")
    assert isinstance(torch_codec, FaceCodec) and m2.ref == "tiny-codec/2"
    enc = EdgeEncoder.from_repository(edge_repo)  # one point of each kind
    assert [type(p.codec) for p in enc.points] == [EdgeCodec, FaceCodec]
    face = faces_of(1)[0]
    picked = enc.pick(face)
    assert bitstream.parse(picked.payload).header.version == bitstream.FORMAT_V2
    with pytest.raises(ValueError, match="v2"):  # CompressAI's two strings: torch codecs only
        EdgeEncoder([edge], merged=False).pick(face)


def test_without_torch_an_unbundled_codec_is_a_clear_error(
    edge_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.delitem(sys.modules, "client.torch_codec", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ModuleNotFoundError
    with pytest.raises(NoEncoderError, match="no edge bundle"):
        load_encoder_codec(edge_repo / "tiny-codec" / "2")
