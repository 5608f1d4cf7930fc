"""Faces of a jointly trained codec are read by the classifier it was trained with."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.service.conftest import Live, SettingsFactory, running


def _pair(repo: Path, codec: str, classifier: str) -> None:
    """Name ``classifier`` in the codec's manifest, as ``fercomp train joint`` records it."""
    f = repo / codec / "manifest.json"
    m = json.loads(f.read_text())
    m["training"] = {**m.get("training", {}), "classifier_artifact": classifier}
    f.write_text(json.dumps(m))


def _reader(live: Live, payload: bytes) -> str:
    r = live.http.post("/v1/classify", content=payload)
    assert r.status_code == 200, r.text
    return str(r.json()["classifier_version"])


def test_each_codec_is_read_by_its_paired_classifier_and_listed_with_it(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v1, payloads_v2
) -> None:
    _pair(repo_copy, "tiny-codec/2", "tiny-classifier/2")
    with running(make_settings(models_dir=repo_copy)) as live:
        assert _reader(live, payloads_v2[0]) == "tiny-classifier/2"  # its pair
        assert _reader(live, payloads_v1[0]) == "tiny-classifier/1"  # unpaired: the active one
        models = {m["ref"]: m for m in live.http.get("/v1/models").json()["models"]}
        assert models["tiny-codec/2"]["paired_classifier"] == "tiny-classifier/2"
        assert models["tiny-classifier/2"]["active"] is False  # loaded, not active
        assert live.http.get("/v1/models").json()["active"]["classifier"] == "tiny-classifier/1"
        from proto.fercomp.v1 import fercomp_pb2 as pb

        listed = {
            (m.name, m.version): m for m in live.stub.ListModels(pb.ListModelsRequest()).models
        }
        assert listed["tiny-codec", "2"].paired_classifier == "tiny-classifier/2"
        assert listed["tiny-codec", "1"].paired_classifier == ""


def test_pairing_off_sends_every_face_to_the_active_classifier(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v2
) -> None:
    _pair(repo_copy, "tiny-codec/2", "tiny-classifier/2")
    with running(make_settings(models_dir=repo_copy, pair_classifiers=False)) as live:
        assert _reader(live, payloads_v2[0]) == "tiny-classifier/1"
        refs = {m["ref"] for m in live.http.get("/v1/models").json()["models"]}
        assert "tiny-classifier/2" not in refs


def test_missing_paired_classifier_leaves_the_codec_on_the_active_one(
    make_settings: SettingsFactory,
    repo_copy: Path,
    payloads_v2,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _pair(repo_copy, "tiny-codec/2", "tiny-classifier/9")
    caplog.set_level(logging.INFO, logger="fercomp.service.registry")
    with running(make_settings(models_dir=repo_copy)) as live:
        assert _reader(live, payloads_v2[0]) == "tiny-classifier/1"
    assert "paired classifier tiny-classifier/9 not loaded" in caplog.text


def test_codec_swap_loads_the_new_codecs_pair(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v2
) -> None:
    _pair(repo_copy, "tiny-codec/2", "tiny-classifier/2")
    with running(make_settings(models_dir=repo_copy, preload_codecs="default")) as live:
        r = live.http.post("/v1/models/swap", json={"kind": "codec", "ref": "tiny-codec/2"})
        assert r.status_code == 200, r.text
        assert _reader(live, payloads_v2[0]) == "tiny-classifier/2"
        # the active classifier is unchanged: unpaired codecs still use it
        assert live.state.registry.active_classifier.ref == "tiny-classifier/1"


def test_broken_paired_classifier_is_a_warning_and_the_codec_falls_back(
    make_settings: SettingsFactory,
    repo_copy: Path,
    payloads_v2,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _pair(repo_copy, "tiny-codec/2", "tiny-classifier/2")
    (repo_copy / "tiny-classifier" / "2" / "weights.safetensors").write_bytes(b"not weights")
    with running(make_settings(models_dir=repo_copy)) as live:
        assert _reader(live, payloads_v2[0]) == "tiny-classifier/1"
    (record,) = [r for r in caplog.records if "paired classifier" in r.getMessage()]
    assert record.levelno == logging.WARNING and "tiny-classifier/2" in record.getMessage()
