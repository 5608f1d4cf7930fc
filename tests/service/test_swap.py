"""Model swap / rollback over REST: auth, success, refusals, old codecs, accuracy guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.service.conftest import Live, SettingsFactory, metric, running, write_canary

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def swap(live: Live, kind: str, ref: str, headers: dict[str, str] = AUTH):
    return live.http.post("/v1/models/swap", json={"kind": kind, "ref": ref}, headers=headers)


def rollback(live: Live, kind: str):
    return live.http.post("/v1/models/rollback", json={"kind": kind}, headers=AUTH)


def test_auth_refusals(make_settings: SettingsFactory, repo_copy: Path) -> None:
    with running(make_settings(models_dir=repo_copy, admin_token=TOKEN)) as live:
        r = swap(live, "classifier", "tiny-classifier/2", headers={})
        assert r.status_code == 401 and r.json()["error"] == "unauthenticated"
        assert r.headers["www-authenticate"] == "Bearer"
        r = swap(live, "classifier", "tiny-classifier/2", headers={"Authorization": "Bearer x"})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        r = live.http.post("/v1/models/rollback", json={"kind": "codec"})
        assert r.status_code == 401
        assert live.state.registry.active_classifier.ref == "tiny-classifier/1"


def test_swap_classifier_and_rollback(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v1: list[bytes]
) -> None:
    with running(make_settings(models_dir=repo_copy, admin_token=TOKEN)) as live:
        before = live.http.post("/v1/classify", content=payloads_v1[0]).json()
        r = swap(live, "classifier", "tiny-classifier/2")
        assert r.status_code == 200, r.text
        assert r.json() | {"accuracy": None} == {
            "kind": "classifier", "previous": "tiny-classifier/1",
            "active": "tiny-classifier/2", "changed": True, "accuracy": None,
        }  # fmt: skip
        after = live.http.post("/v1/classify", content=payloads_v1[0]).json()
        assert after["classifier_version"] == "tiny-classifier/2"
        assert after["probabilities"] != before["probabilities"]
        assert swap(live, "classifier", "tiny-classifier/2").json()["changed"] is False
        r = rollback(live, "classifier")
        assert r.status_code == 200 and r.json()["active"] == "tiny-classifier/1"
        again = live.http.post("/v1/classify", content=payloads_v1[0]).json()
        assert again["classifier_version"] == "tiny-classifier/1"
        r = rollback(live, "classifier")
        assert r.status_code == 409 and r.json()["error"] == "nothing_to_rollback"
        text = live.metrics()
        assert metric(text, "fercomp_swaps_total", kind="classifier", result="success") == 1
        assert metric(text, "fercomp_swaps_total", kind="classifier", result="rollback") == 1
        info = dict(kind="classifier", name="tiny-classifier", version="1", active="true")
        assert metric(text, "fercomp_model_info", **info) == 1


def test_failed_swap_leaves_serving_model(
    make_settings: SettingsFactory, repo_copy: Path, payloads_v1: list[bytes]
) -> None:
    weights = repo_copy / "tiny-classifier" / "2" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    (repo_copy / "outside").mkdir()
    with running(make_settings(models_dir=repo_copy)) as live:  # loopback, no token: open
        r = swap(live, "classifier", "tiny-classifier/2", headers={})
        assert r.status_code == 422 and r.json()["error"] == "invalid_artifact"
        assert "checksum mismatch" in r.json()["detail"]
        cases = [
            ("classifier", "../outside", 400, "bad_ref"),
            ("classifier", "/etc/passwd", 400, "bad_ref"),
            ("classifier", "tiny-classifier/9", 404, "not_found"),
            ("classifier", "tiny-codec/2", 422, "invalid_artifact"),  # wrong kind
        ]
        for kind, ref, status, code in cases:
            r = swap(live, kind, ref, headers={})
            assert (r.status_code, r.json()["error"]) == (status, code), (ref, r.text)
        r = live.http.post("/v1/models/swap", json={"kind": "weights", "ref": "x/1"})
        assert r.status_code == 422
        assert live.state.registry.active_classifier.ref == "tiny-classifier/1"
        assert live.http.post("/v1/classify", content=payloads_v1[0]).status_code == 200
        text = live.metrics()
        assert metric(text, "fercomp_swaps_total", result="invalid_artifact") == 2


def test_old_codec_streams_decode_after_codec_swap(
    make_settings: SettingsFactory,
    repo_copy: Path,
    payloads_v1,
    payloads_v2,
) -> None:
    settings = make_settings(models_dir=repo_copy, preload_codecs="default")
    with running(settings) as live:
        r = live.http.post("/v1/classify", content=payloads_v2[0])
        assert r.status_code == 422 and r.json()["error"] == "unknown_codec"
        r = swap(live, "codec", "tiny-codec/2", headers={})
        assert r.status_code == 200 and r.json()["active"] == "tiny-codec/2"
        old = live.http.post("/v1/classify", content=payloads_v1[0]).json()
        new = live.http.post("/v1/classify", content=payloads_v2[0]).json()
        assert (old["codec_version"], new["codec_version"]) == ("tiny-codec/1", "tiny-codec/2")
        manifest = live.http.get("/v1/codecs/active/manifest").json()
        assert manifest["version"] == "2"
        assert rollback(live, "codec").json()["active"] == "tiny-codec/1"
        # Rolled back, codec 2 stays loaded for clients that already switched.
        assert live.http.post("/v1/classify", content=payloads_v2[1]).status_code == 200


@pytest.mark.parametrize(("margin", "ok"), [(1.0, True), (-1.0, False)])
def test_accuracy_guard(
    make_settings: SettingsFactory, repo_copy: Path, tmp_path: Path, margin: float, ok: bool
) -> None:
    settings = make_settings(
        models_dir=repo_copy,
        canary_data=write_canary(tmp_path / "canary.npz"),
        canary_margin=margin,
    )
    with running(settings) as live:
        for kind, ref in (("classifier", "tiny-classifier/2"), ("codec", "tiny-codec/2")):
            r = swap(live, kind, ref, headers={})
            if ok:
                assert r.status_code == 200, r.text
                acc = r.json()["accuracy"]
                assert acc["n"] == 24 and 0 <= acc["candidate"] <= 1
            else:
                assert r.status_code == 409 and r.json()["error"] == "accuracy_regression"
        expect = "tiny-classifier/2" if ok else "tiny-classifier/1"
        assert live.state.registry.active_classifier.ref == expect


def test_copy_is_independent(model_repo: Path, repo_copy: Path) -> None:
    """Guard for the fixtures: the session repository is never modified by these tests."""
    assert not (model_repo / "outside").exists()
    shutil.rmtree(repo_copy / "tiny-codec" / "2")
    assert (model_repo / "tiny-codec" / "2").is_dir()
