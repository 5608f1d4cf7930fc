"""Artifact save/load, checksum and architecture refusal, repository path safety."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core.artifacts import (
    ArtifactError,
    ModelRepository,
    load_classifier,
    load_codec,
    read_manifest,
    save_codec,
)
from core.classifier import EXPRESSIONS, ClassifierConfig, FERClassifier
from core.codec import CodecConfig, FaceHyperprior


def test_codec_manifest_and_tables(model_repo: Path) -> None:
    m = read_manifest(model_repo / "tiny-codec" / "1")
    assert m.kind == "codec" and m.codec_id == m.sha256[:8]
    assert m.architecture == {"arch": "mbt2018-mean", "N": 16, "M": 24, "in_channels": 1}
    codec, _ = load_codec(model_repo / "tiny-codec" / "1")
    # entropy-coder tables travel with the weights: no update() needed after loading
    assert codec.model.gaussian_conditional._quantized_cdf.numel() > 0
    assert codec.codec_id.hex() == m.codec_id


def test_classifier_round_trip(model_repo: Path, tmp_path: Path) -> None:
    clf, m = load_classifier(model_repo / "tiny-classifier" / "1")
    assert m.weights_dtype == "float16"
    p = clf.predict_proba(torch.rand(2, 1, 48, 48))
    assert p.shape == (2, len(EXPRESSIONS)) and torch.allclose(p.sum(1), torch.ones(2))


def test_checksum_mismatch_refused(model_repo: Path, tmp_path: Path) -> None:
    art = tmp_path / "c"
    shutil.copytree(model_repo / "tiny-codec" / "1", art)
    data = bytearray((art / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (art / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_codec(art)


def test_architecture_mismatch_refused(model_repo: Path, tmp_path: Path) -> None:
    art = tmp_path / "c"
    shutil.copytree(model_repo / "tiny-codec" / "1", art)
    mf = json.loads((art / "manifest.json").read_text())
    mf["architecture"]["M"] = 32
    (art / "manifest.json").write_text(json.dumps(mf))
    with pytest.raises(ArtifactError, match="do not match the architecture"):
        load_codec(art)


def test_wrong_kind_refused(model_repo: Path) -> None:
    with pytest.raises(ArtifactError, match="expected a codec"):
        load_codec(model_repo / "tiny-classifier" / "1")


def test_not_an_artifact(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a model artifact"):
        load_codec(tmp_path)


def test_repository_resolution_and_escape(model_repo: Path) -> None:
    repo = ModelRepository(model_repo)
    assert repo.path("tiny-codec").name == "2"  # newest version
    assert repo.path("tiny-codec/1").name == "1"
    assert {m.ref for m in repo.list("codec")} == {"tiny-codec/1", "tiny-codec/2"}
    for bad in ("../x/1", "tiny-codec/..", "/etc/passwd", "a/b/c", "tiny-codec/9"):
        with pytest.raises(ArtifactError):
            repo.path(bad)
    assert repo.defaults()["codec"] == "tiny-codec/1"


def test_save_rejects_unsafe_names(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="invalid name"):
        save_codec(FaceHyperprior(CodecConfig(N=16, M=24)), tmp_path, "../evil", "1")


def test_classifier_stems() -> None:
    for stem in ("small", "imagenet"):
        m = FERClassifier(ClassifierConfig(width=8, stem=stem))
        assert m(torch.rand(2, 1, 48, 48)).shape == (2, 7)
    full = FERClassifier(ClassifierConfig(width=64))
    n = sum(p.numel() for p in full.parameters())
    assert 11_000_000 < n < 11_300_000  # it is a ResNet-18


def test_models_dir_setting_has_one_name(tmp_path: Path, monkeypatch) -> None:
    from core.artifacts import bundled_models_dir

    monkeypatch.delenv("FERCOMP_MODELS", raising=False)
    monkeypatch.setenv("FERCOMP_MODELS_DIR", str(tmp_path))
    assert bundled_models_dir() == tmp_path
    monkeypatch.delenv("FERCOMP_MODELS_DIR")
    monkeypatch.setenv("FERCOMP_MODELS", str(tmp_path / "old"))
    with pytest.warns(DeprecationWarning, match="FERCOMP_MODELS_DIR"):
        assert bundled_models_dir() == tmp_path / "old"
    monkeypatch.delenv("FERCOMP_MODELS")
    assert bundled_models_dir().name == "models"


def test_exported_weights_are_readable_by_other_users(tmp_path: Path) -> None:
    # The server image runs as its own uid; safetensors alone writes owner-only files.
    from core.artifacts import save_classifier

    save_classifier(FERClassifier(ClassifierConfig(width=4)), tmp_path / "c" / "1", "c", "1")
    for f in (tmp_path / "c" / "1").iterdir():
        assert f.stat().st_mode & 0o044 == 0o044, f
