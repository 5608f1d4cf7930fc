"""Stored predictions: lookup, filters, cursor pagination, labels after the fact."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from proto.fercomp.v1 import fercomp_pb2 as pb
from tests.service.conftest import Live, metric, running


class Seeded(Live):
    """The live server plus what the fixture sent to it."""

    t0: float
    ids_a: list[str]  # client a, over a gRPC stream
    ids_b: list[str]  # client b, over REST


@pytest.fixture(scope="module")
def live(model_repo, tmp_path_factory, payloads_v1) -> Iterator[Seeded]:
    """A server holding 10 predictions: 6 from client a (gRPC), 4 from client b (HTTP)."""
    from service.settings import Settings

    db = tmp_path_factory.mktemp("pred") / "p.sqlite3"
    settings = Settings(grpc_port=0, http_port=0, models_dir=model_repo, db_path=db, device="cpu")
    with running(settings) as base:
        live = Seeded(base.server)
        live.t0 = time.time()
        stream = [
            pb.ClassifyRequest(bitstream=p, client_id="a", stream_id="s") for p in payloads_v1[:6]
        ]
        live.ids_a = [r.prediction_id for r in live.stub.ClassifyStream(iter(stream))]
        live.ids_b = []
        for p in payloads_v1[6:10]:
            r = live.http.post("/v1/classify", content=p, params={"client_id": "b"})
            live.ids_b.append(r.json()["prediction_id"])
        yield live
        live.close()


def page_all(live: Seeded, **params: object) -> list[dict]:
    items, cursor = [], None
    for _ in range(50):
        q = dict(params) | ({"cursor": cursor} if cursor else {})
        body = live.http.get("/v1/predictions", params=q).json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination does not end")


def test_get_one(live: Seeded) -> None:
    rec = live.http.get(f"/v1/predictions/{live.ids_a[0]}").json()
    assert rec["client_id"] == "a" and rec["stream_id"] == "s" and rec["transport"] == "grpc_stream"
    assert rec["codec_version"] == "tiny-codec/1" and len(rec["probabilities"]) == 7
    assert rec["label"] is None and rec["bytes"] > 0
    r = live.http.get("/v1/predictions/nope")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_filters(live: Seeded) -> None:
    assert {p["id"] for p in page_all(live, client_id="a")} == set(live.ids_a)
    assert {p["id"] for p in page_all(live, client_id="b")} == set(live.ids_b)
    expr = live.http.get(f"/v1/predictions/{live.ids_b[0]}").json()["expression"]
    assert all(p["expression"] == expr for p in page_all(live, expression=expr))
    assert page_all(live, until=live.t0) == []
    iso = datetime.fromtimestamp(live.t0, UTC).isoformat()
    assert len(page_all(live, since=iso, client_id="b")) == 4
    # Parameters are validated by their types: 422 with the standard body (test_rest_hostile.py).
    r = live.http.get("/v1/predictions", params={"expression": "bored"})
    assert (r.status_code, r.json()["error"]) == (422, "bad_request")
    assert live.http.get("/v1/predictions", params={"since": "yesterday"}).status_code == 422


def test_cursor_pagination_newest_first(live: Seeded) -> None:
    pages = []
    body = live.http.get("/v1/predictions", params={"limit": 3}).json()
    pages.append(body["items"])
    while body["next_cursor"]:
        body = live.http.get(
            "/v1/predictions", params={"limit": 3, "cursor": body["next_cursor"]}
        ).json()
        pages.append(body["items"])
    ids = [p["id"] for page in pages for p in page]
    assert [len(p) for p in pages][:3] == [3, 3, 3]
    assert len(ids) == len(set(ids)) >= 10
    created = [p["created_at"] for page in pages for p in page]
    assert created == sorted(created, reverse=True)
    assert live.http.get("/v1/predictions", params={"cursor": "x"}).status_code == 422


def test_label_after_the_fact_updates_accuracy(live: Seeded) -> None:
    pid_right, pid_wrong = live.ids_b[0], live.ids_b[1]
    right = live.http.get(f"/v1/predictions/{pid_right}").json()
    wrong = live.http.get(f"/v1/predictions/{pid_wrong}").json()
    wrong_label = next(e for e in ("angry", "happy") if e != wrong["expression"])
    before = live.metrics()
    r1 = live.http.post(f"/v1/predictions/{pid_right}/label", json={"label": right["expression"]})
    r2 = live.http.post(f"/v1/predictions/{pid_wrong}/label", json={"label": wrong_label})
    assert r1.status_code == r2.status_code == 200
    after = live.metrics()
    clf = {"classifier_version": "tiny-classifier/1"}
    assert (
        metric(after, "fercomp_labelled_total", **clf)
        - metric(before, "fercomp_labelled_total", **clf)
        == 2
    )
    assert (
        metric(after, "fercomp_correct_total", **clf)
        - metric(before, "fercomp_correct_total", **clf)
        == 1
    )
    assert live.http.get(f"/v1/predictions/{pid_right}").json()["label"] is not None
    again = live.http.post(f"/v1/predictions/{pid_right}/label", json={"label": 0})
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert live.http.post("/v1/predictions/nope/label", json={"label": 1}).status_code == 404
    bad = live.http.post(f"/v1/predictions/{live.ids_a[5]}/label", json={"label": 11})
    assert (bad.status_code, bad.json()["error"]) == (422, "bad_request")


def test_label_in_request_counts(live: Seeded, payloads_v1: list[bytes]) -> None:
    before = metric(live.metrics(), "fercomp_labelled_total")
    r = live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[11], label=2))
    assert live.http.get(f"/v1/predictions/{r.prediction_id}").json()["label"] == 2
    assert metric(live.metrics(), "fercomp_labelled_total") == before + 1
