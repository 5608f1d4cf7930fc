"""Every REST endpoint except swap/rollback (test_swap.py) and predictions (test_predictions.py)."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from core.classifier import EXPRESSIONS
from tests.service.conftest import Live, running


@pytest.fixture(scope="module")
def live(model_repo, tmp_path_factory) -> Iterator[Live]:
    from service.settings import Settings

    db = tmp_path_factory.mktemp("http") / "p.sqlite3"
    settings = Settings(grpc_port=0, http_port=0, models_dir=model_repo, db_path=db, device="cpu")
    with running(settings) as live:
        yield live


def test_health_and_readiness(live: Live) -> None:
    assert live.http.get("/healthz").json()["status"] == "ok"
    r = live.http.get("/readyz")
    assert r.status_code == 200
    assert r.json() | {"queue_depth": 0} == {
        "status": "ready", "codec": "tiny-codec/1", "classifier": "tiny-classifier/1",
        "queue_depth": 0, "precision": live.state.settings.resolved_precision(),
    }  # fmt: skip


def test_rest_connections_have_tcp_nodelay(live: Live) -> None:
    """Without TCP_NODELAY on the accepted socket, every response after the first on a
    keep-alive connection waited out the client's delayed ACK (44 ms per request here): asyncio
    sets it only when the listening socket says IPPROTO_TCP (service.app._bind)."""
    live.http.get("/healthz")  # a keep-alive connection the server now holds open
    uv = live.server._uvicorn
    assert uv is not None
    socks = [c.transport.get_extra_info("socket") for c in uv.server_state.connections]
    assert socks, "the keep-alive connection is not among uvicorn's connections"
    for s in socks:
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_classify_same_fields_as_grpc(live: Live, payloads_v1: list[bytes]) -> None:
    r = live.http.post(
        "/v1/classify",
        content=payloads_v1[0],
        params={"client_id": "cam-1", "request_id": "q1"},
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == "q1" and r.headers["x-request-id"]
    assert body["expression_name"] in EXPRESSIONS
    assert body["expression"] == body["expression_name"].upper()
    assert len(body["probabilities"]) == 7 and body["received_bytes"] == len(payloads_v1[0])
    from proto.fercomp.v1 import fercomp_pb2 as pb

    grpc_fields = {f.name for f in pb.ClassifyResponse.DESCRIPTOR.fields} - {"error"}
    assert set(body) == grpc_fields
    assert live.http.get(f"/v1/predictions/{body['prediction_id']}").json()["client_id"] == "cam-1"


def test_classify_header_client_id_and_label(live: Live, payloads_v1: list[bytes]) -> None:
    r = live.http.post(
        "/v1/classify", content=payloads_v1[1], params={"label": 3}, headers={"x-client-id": "h1"}
    )
    rec = live.http.get(f"/v1/predictions/{r.json()['prediction_id']}").json()
    assert rec["client_id"] == "h1" and rec["label"] == 3 and rec["transport"] == "http"


@pytest.mark.parametrize(
    ("mangle", "status", "code"),
    [
        (lambda b: b[:12], 400, "truncated"),
        (lambda b: b"XX" + b[2:], 400, "bad_magic"),
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), 400, "corrupt"),
        (lambda b: b + b"\x00", 400, "trailing_data"),
        (lambda b: b[:3] + b"\xde\xad\xbe\xef" + b[7:], 422, "unknown_codec"),
    ],
)
def test_classify_errors(live: Live, payloads_v1: list[bytes], mangle, status, code) -> None:
    r = live.http.post("/v1/classify", content=mangle(payloads_v1[2]))
    assert (r.status_code, r.json()["error"]) == (status, code), r.text
    assert r.json()["detail"]
    assert live.http.post("/v1/classify", content=payloads_v1[2]).status_code == 200


def test_classify_rejects_oversize_and_bad_label(live: Live, payloads_v1: list[bytes]) -> None:
    big = live.http.post("/v1/classify", content=b"F" * (live.state.settings.max_payload_bytes + 1))
    assert big.status_code == 413 and big.json()["error"] == "payload_too_large"
    bad = live.http.post("/v1/classify", content=payloads_v1[0], params={"label": 7})
    assert bad.status_code == 422 and bad.json()["error"] == "bad_request"


def test_list_models(live: Live) -> None:
    body = live.http.get("/v1/models").json()
    assert body["active"] == {"codec": "tiny-codec/1", "classifier": "tiny-classifier/1"}
    refs = {(m["kind"], m["ref"], m["active"]) for m in body["models"]}
    assert ("codec", "tiny-codec/2", False) in refs  # preload_codecs=all loads old versions
    assert ("classifier", "tiny-classifier/1", True) in refs
    assert all(m["paired_classifier"] is None for m in body["models"])  # none trained jointly


def test_model_entry_names_the_classifier_a_joint_codec_was_trained_with(live: Live) -> None:
    from service.http.models import _entry

    codec = live.state.registry.active_codec.manifest
    joint = codec.model_copy(update={"training": {"classifier_artifact": "tiny-classifier/2"}})
    assert _entry(joint, active=False).paired_classifier == "tiny-classifier/2"
    by_hand = joint.model_copy(
        update={
            "training": {
                "paired_classifier": "tiny-classifier/1",
                "classifier_artifact": "tiny-classifier/2",
            }
        }
    )
    assert _entry(by_hand, active=False).paired_classifier == "tiny-classifier/1"
    clf = live.state.registry.active_classifier.manifest
    assert _entry(clf, active=True).paired_classifier is None


@pytest.mark.parametrize("which", ["active", "id"])
def test_codec_download_matches_manifest(live: Live, which: str) -> None:
    active = live.state.registry.active_codec
    codec_id = "active" if which == "active" else active.codec_id.hex()
    manifest = live.http.get(f"/v1/codecs/{codec_id}/manifest").json()
    assert manifest["codec_id"] == active.codec_id.hex() and manifest["kind"] == "codec"
    r = live.http.get(f"/v1/codecs/{codec_id}/download")
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == manifest["sha256"]
    assert r.headers["x-fercomp-sha256"] == manifest["sha256"]
    json.dumps(manifest)  # plain JSON


def test_codec_download_unknown(live: Live) -> None:
    r = live.http.get("/v1/codecs/00000000/download")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert live.http.get("/v1/nope").json()["error"] == "not_found"


def test_openapi_lists_every_route(live: Live) -> None:
    paths = set(live.http.get("/openapi.json").json()["paths"])
    assert {
        "/healthz", "/readyz", "/metrics", "/v1/models", "/v1/models/swap",
        "/v1/models/rollback", "/v1/codecs/{codec_id}/download",
        "/v1/codecs/{codec_id}/manifest", "/v1/classify", "/v1/predictions",
        "/v1/predictions/{pred_id}", "/v1/predictions/{pred_id}/label",
    } <= paths  # fmt: skip


def _records_with_id(caplog: pytest.LogCaptureFixture, rid: str) -> list[logging.LogRecord]:
    return [rec for rec in caplog.records if getattr(rec, "request_id", None) == rid]


def test_request_id_header_on_every_response(live: Live, caplog: pytest.LogCaptureFixture) -> None:
    """A sane x-request-id comes back as sent and names the request's log line; a bad one is
    replaced by a fresh id; refusals made before any route (413) carry one too."""
    octets = {"content-type": "application/octet-stream"}
    with caplog.at_level("INFO", logger="fercomp.service.http"):
        r = live.http.get("/healthz", headers={"x-request-id": "rid-rest-1"})
        assert r.headers["x-request-id"] == "rid-rest-1"
        # The line is written once the response is sent, so the client may read the answer
        # before the server's thread has logged it (seen once in CI): wait for it, briefly.
        deadline = time.monotonic() + 5.0
        while not (lines := _records_with_id(caplog, "rid-rest-1")) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [(rec.path, rec.status) for rec in lines] == [("/healthz", 200)]  # type: ignore[attr-defined]
    bad = live.http.get("/healthz", headers={"x-request-id": "no spaces allowed"})
    assert bad.headers["x-request-id"] not in ("", "no spaces allowed")
    big = live.http.post("/v1/fleet/rollout", content=b"{" + b" " * 70_000 + b"}",
                         headers={"content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and big.headers["x-request-id"]
    missing = live.http.post("/v1/classify", content=b"\0" * 8, headers=octets)
    assert missing.status_code == 400 and missing.headers["x-request-id"]
