"""Faces of a jointly trained codec are read by the classifier it was trained with."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tests.conftest import pair_codec_with
from tests.service.conftest import Live, SettingsFactory, running, write_canary


def _reader(live: Live, payload: bytes) -> str:
    r = live.http.post("/v1/classify", content=payload)
    assert r.status_code == 200, r.text
    return str(r.json()["classifier_version"])


def test_each_codec_is_read_by_its_paired_classifier_and_listed_with_it(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v1, payloads_v2
) -> None:
    pair_codec_with(repo_copy / "tiny-codec/2", "tiny-classifier/2")
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
    pair_codec_with(repo_copy / "tiny-codec/2", "tiny-classifier/2")
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
    pair_codec_with(repo_copy / "tiny-codec/2", "tiny-classifier/9")
    caplog.set_level(logging.INFO, logger="fercomp.service.registry")
    with running(make_settings(models_dir=repo_copy)) as live:
        assert _reader(live, payloads_v2[0]) == "tiny-classifier/1"
    assert "paired classifier tiny-classifier/9 not loaded" in caplog.text


def test_codec_swap_loads_the_new_codecs_pair(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v2
) -> None:
    pair_codec_with(repo_copy / "tiny-codec/2", "tiny-classifier/2")
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
    pair_codec_with(repo_copy / "tiny-codec/2", "tiny-classifier/2")
    (repo_copy / "tiny-classifier" / "2" / "weights.safetensors").write_bytes(b"not weights")
    with running(make_settings(models_dir=repo_copy)) as live:
        assert _reader(live, payloads_v2[0]) == "tiny-classifier/1"
    (record,) = [r for r in caplog.records if "paired classifier" in r.getMessage()]
    assert record.levelno == logging.WARNING and "tiny-classifier/2" in record.getMessage()


def test_codec_swap_with_a_broken_pair_is_refused_and_changes_nothing(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v2
) -> None:
    """At startup a broken pair falls back (the server must come up); a swap is an operator's
    act, so it is refused rather than serve a joint codec with a classifier it never saw."""
    pair_codec_with(repo_copy / "tiny-codec/2", "tiny-classifier/2")
    (repo_copy / "tiny-classifier" / "2" / "weights.safetensors").write_bytes(b"not weights")
    with running(make_settings(models_dir=repo_copy, preload_codecs="default")) as live:
        r = live.http.post("/v1/models/swap", json={"kind": "codec", "ref": "tiny-codec/2"})
        assert r.status_code == 422 and r.json()["error"] == "invalid_artifact", r.text
        assert "paired classifier tiny-classifier/2" in r.json()["detail"]
        assert live.state.registry.active_codec.ref == "tiny-codec/1"
        assert "tiny-codec/2" not in {c.ref for c in live.state.registry.codecs()}


def test_accuracy_guard_checks_each_swap_on_the_faces_the_candidate_will_read(
    make_settings: SettingsFactory, repo_copy: Path, tmp_path: Path
) -> None:
    """A codec swap: the candidate codec with its pair vs the active codec with its reader. A
    classifier swap while the active codec is paired: on an unpaired codec's faces, the only
    ones the active classifier reads."""
    pair_codec_with(repo_copy / "tiny-codec/2", "tiny-classifier/2")
    settings = make_settings(
        models_dir=repo_copy, canary_data=write_canary(tmp_path / "canary.npz"), canary_margin=1.0
    )
    with running(settings) as live:
        r = live.http.post("/v1/models/swap", json={"kind": "codec", "ref": "tiny-codec/2"})
        assert r.status_code == 200, r.text
        acc = r.json()["accuracy"]
        assert (acc["reader"], acc["serving_reader"]) == ("tiny-classifier/2", "tiny-classifier/1")
        r = live.http.post(
            "/v1/models/swap", json={"kind": "classifier", "ref": "tiny-classifier/2"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["accuracy"]["codec"] == "tiny-codec/1"  # unpaired, not the active one


def test_swapping_to_a_copy_of_the_active_codecs_weights_changes_nothing(
    make_settings: SettingsFactory, repo_copy: Path
) -> None:
    """The codec id is the weights' checksum: a copy under another version is the same codec."""
    shutil.copytree(repo_copy / "tiny-codec" / "1", repo_copy / "tiny-codec" / "7")
    manifest = repo_copy / "tiny-codec" / "7" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version": "1"', '"version": "7"'))
    with running(make_settings(models_dir=repo_copy, preload_codecs="default")) as live:
        r = live.http.post("/v1/models/swap", json={"kind": "codec", "ref": "tiny-codec/7"})
        assert r.status_code == 200, r.text
        assert (r.json()["changed"], r.json()["active"]) == (False, "tiny-codec/1")
