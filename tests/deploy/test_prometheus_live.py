"""Against a real Prometheus: what docs, rules and dashboard show matches known traffic.

A real server (bundled models, default pair) and Debian's Prometheus (scraping it every 1 s,
the shipped rules.yml loaded) are started here. Known traffic goes in: labelled PublicTest
faces over REST (``?label=``) and gRPC (client SDK), unlabelled stream frames and REST faces
labelled afterwards, and failures (bad magic, an unsupported version). Then every shipped
PromQL expression (tests/deploy/promql_queries.py) runs through /api/v1/query at the
timestamp of a scrape taken after the traffic, and must equal its truth from the one list in
tests/deploy/promql_truth.py. At a scrape's timestamp, with every series sampled at 0 before
its first event, rate()/increase() extrapolate nothing, so counter figures are exact.
The error ratio is also checked while idle and after successes only: 0, never "No data".
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from client.results import ItemErrorResult
from client.sdk import FerClient
from core.artifacts import ModelRepository, bundled_models_dir, load_codec
from core.classifier import EXPRESSIONS
from service.app import Server
from service.settings import Settings
from tests.deploy import promql_queries as pq
from tests.deploy.prometheus_server import PrometheusAPI, binaries, running_prometheus
from tests.deploy.promql_truth import CATALOG, ERROR_RATIO, RATE_TOL, Traffic, label_key
from training.data import load_npz

pytestmark = [pytest.mark.prometheus, pytest.mark.data]

N_REST, N_GRPC, N_STREAM, N_LATE = 30, 30, 8, 6  # faces per path (labelled: all but stream)
BAD_MAGIC = b"XX" + bytes(40)
BAD_VERSION = b"FR\x09"


@pytest.fixture(scope="module")
def prometheus_found() -> None:
    """Skips before the server starts when there is no Prometheus to point at it."""
    binaries()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module (loading the bundled models is the slow part); only the
    traffic test sends requests, the others read /metrics."""
    with pytest.MonkeyPatch.context() as env:
        for key in list(os.environ):  # the developer's FERCOMP_* must not reach the settings
            if key.startswith("FERCOMP_") and key != "FERCOMP_DATA":
                env.delenv(key)
        srv = Server(
            Settings(
                host="127.0.0.1", grpc_port=0, http_port=0, device="cpu",
                models_dir=bundled_models_dir(), preload_codecs="default",
                db_path=tmp_path_factory.mktemp("store") / "predictions.sqlite3",
            )
        )  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(grace=2.0)


def send_traffic(
    grpc_target: str,
    http: httpx.Client,
    faces: np.ndarray,
    labels: list[int],
    after_successes: Callable[[Traffic], None],
) -> Traffic:
    """Known traffic on every transport; returns what a client knows about it.
    ``after_successes`` runs after the first requests, all successful, before any failure."""
    t = Traffic()
    codec, _ = load_codec(ModelRepository(bundled_models_dir()).path(_default("codec")))

    def ok(transport: str, size: int, expression: str, version: str, label: int | None) -> None:
        t.requests[(transport, "ok")] += 1
        t.received[transport] += size
        t.sizes.append(size)
        t.predicted[expression] += 1
        if label is not None:
            t.labelled[version] += 1
            t.correct[version] += expression == EXPRESSIONS[label]

    def failed(transport: str, size: int, code: str) -> None:
        t.requests[(transport, code)] += 1
        t.received[transport] += size

    rest = slice(0, N_REST + N_LATE)
    payloads = codec.encode(_tensor(faces[rest]))
    late: list[tuple[str, int]] = []
    for i, (p, y) in enumerate(zip(payloads, labels[rest], strict=True)):
        label = y if i < N_REST else None  # the last N_LATE are labelled afterwards
        r = http.post("/v1/classify", content=p, params={} if label is None else {"label": y})
        assert r.status_code == 200, r.text
        body = r.json()
        ok("http", len(p), body["expression_name"], body["classifier_version"], label)
        if label is None:
            late.append((body["prediction_id"], y))
    for pred_id, y in late:
        r = http.post(f"/v1/predictions/{pred_id}/label", json={"label": y})
        assert r.status_code == 200, r.text
        t.labelled[r.json()["classifier_version"]] += 1
        t.correct[r.json()["classifier_version"]] += r.json()["expression"] == EXPRESSIONS[y]
    after_successes(t)
    for bad, code in (
        (BAD_MAGIC, "bad_magic"),
        (BAD_MAGIC, "bad_magic"),
        (BAD_VERSION, "unsupported_version"),
    ):
        r = http.post("/v1/classify", content=bad)
        assert r.json()["error"] == code, r.text
        failed("http", len(bad), code)

    grpc_faces = slice(N_REST + N_LATE, N_REST + N_LATE + N_GRPC)
    stream_faces = slice(grpc_faces.stop, grpc_faces.stop + N_STREAM)
    with FerClient(grpc_target, codec=codec) as client:
        items: list[Any] = [*faces[grpc_faces], BAD_MAGIC, BAD_MAGIC, BAD_MAGIC]
        ys: list[int | None] = [*labels[grpc_faces], None, None, None]
        for res, y in zip(
            client.classify_many(items, labels=ys, return_errors=True), ys, strict=True
        ):
            if isinstance(res, ItemErrorResult):
                failed("grpc", res.bytes_sent, res.code)
            else:
                ok("grpc", res.face.bytes_sent, res.expression, res.classifier_version, y)
        for res in client.stream([*faces[stream_faces], BAD_MAGIC]):
            if isinstance(res, ItemErrorResult):
                failed("grpc_stream", res.bytes_sent, res.code)
            else:
                ok("grpc_stream", res.face.bytes_sent, res.expression, res.classifier_version, None)
    assert t.requests[("grpc", "bad_magic")] == 3 and t.requests[("grpc_stream", "bad_magic")] == 1
    return t


def _default(kind: str) -> str:
    return json.loads((bundled_models_dir() / "defaults.json").read_text())[kind]


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(255).unsqueeze(1)


def scrape_time_after(prom: PrometheusAPI, t: Traffic) -> float:
    """Timestamp of a scrape that holds all of ``t`` (polled: scrapes come every second)."""
    expected = {
        "sum(fercomp_requests_total)": sum(t.requests.values()),
        "sum(fercomp_received_bytes_total)": sum(t.received.values()),
        "sum(fercomp_labelled_total)": sum(t.labelled.values()),
        # a stream's admission slot is released when its handler returns, which may be after
        # the client has read its last response: wait for the scrape that saw it closed
        "sum(fercomp_grpc_streams_open)": 0,
    }

    def caught_up() -> bool:
        return all(
            (r := prom.query(q)) and float(r[0]["value"][1]) == v for q, v in expected.items()
        )

    prom.wait_for("scrape with the whole traffic", caught_up)
    return float(prom.query("max(timestamp(fercomp_requests_total))")[0]["value"][1])


def test_every_shipped_query_matches_known_traffic(
    fer_npz: Path, prometheus_found: None, server: Server, tmp_path: Path
) -> None:
    assert server.ports is not None
    images, labels = load_npz(fer_npz, "PublicTest")
    n = N_REST + N_LATE + N_GRPC + N_STREAM
    with (
        running_prometheus(tmp_path, [f"127.0.0.1:{server.ports.http}"]) as prom,
        httpx.Client(base_url=f"http://127.0.0.1:{server.ports.http}", timeout=30) as http,
    ):
        # Every series' first sample must be the 0 exported at start-up, before any traffic;
        # two samples make a rate: the error ratio of an idle server is 0, not "No data".
        prom.wait_for("two scrapes", lambda: prom.query("count_over_time(up[5m]) >= 2"))
        assert error_ratios(prom, scrape_time_after(prom, Traffic())) == {0.0}

        def no_errors_yet(t: Traffic) -> None:  # requests but no failure: 0, not "No data"
            assert error_ratios(prom, scrape_time_after(prom, t)) == {0.0}

        traffic = send_traffic(
            f"127.0.0.1:{server.ports.grpc}", http, images[:n], labels[:n].tolist(), no_errors_yet
        )
        at = scrape_time_after(prom, traffic)
        traffic.server_metrics = http.get("/metrics").text
        prom.wait_for(
            "first evaluation of every rule",
            lambda: all(r["health"] == "ok" for r in prom.rules()),
        )
        failures = [msg for q in pq.shipped() if (msg := evaluate(prom, q, at, traffic))]
        # The rules as Prometheus runs them on its own schedule: each stores a series once an
        # evaluation has run after the traffic (a "healthy" rule may have run before it).
        names = pq.recording_rules()
        prom.wait_for("series from every recording rule", lambda: all(prom.query(n) for n in names))
        recorded = {name: prom.query(name) for name in names}

    assert not failures, "\n".join(failures)
    assert all(recorded.values()), f"a recording rule stored nothing: {recorded}"


def error_ratios(prom: PrometheusAPI, at: float) -> set[float]:
    """The values of every shipped error-ratio query (one series each) at ``at``."""
    queries = [q for q in pq.shipped() if CATALOG[pq.key(q.expr)] is ERROR_RATIO]
    assert len(queries) >= 2  # METRICS.md and the dashboard
    results = [prom.query(pq.evaluable(q.expr), at) for q in queries]
    assert all(len(r) == 1 for r in results), results
    return {float(r[0]["value"][1]) for r in results}


def evaluate(prom: PrometheusAPI, q: pq.Shipped, at: float, t: Traffic) -> str:
    """'' when ``q`` evaluated at ``at`` equals its truth, else what differs."""
    expect = CATALOG.get(pq.key(q.expr))
    if expect is None:
        return f"{q.source}: no truth in promql_truth.CATALOG for {pq.key(q.expr)!r}"
    expr = pq.evaluable(q.expr)
    got = {label_key(r["metric"]): float(r["value"][1]) for r in prom.query(expr, at)}
    want = expect.truth(t, pq.range_seconds(expr))
    if want is None:
        return "" if not got else f"{q.source}: expected no series, got {got}"
    problems = []
    for k, v in want.items():
        g = got.get(k)
        print(f"{q.source:58} {k[:40]:40} truth {v:12.6g}  Prometheus {g}")  # -rP shows it
        if g is None or math.isnan(g) or abs(g - v) > expect.tol * abs(v) + 1e-12:
            problems.append(f"{k or '{}'}: Prometheus {g} vs truth {v:.6g}")
    problems += [f"{k}: unexpected {v}" for k, v in got.items() if k not in want and v != 0]
    return f"{q.source} {expr}: " + "; ".join(problems) if problems else ""


def test_catalog_and_shipped_queries_match() -> None:
    """Each shipped query has a truth, each truth a shipped query."""
    shipped = {pq.key(q.expr) for q in pq.shipped()}
    assert shipped - CATALOG.keys() == set(), "add these to tests/deploy/promql_truth.py"
    assert CATALOG.keys() - shipped == set(), "no longer shipped: remove from promql_truth.py"
    assert RATE_TOL <= 0.01  # the bound for bandwidth, accuracy, labelled, errors


def test_deploy_doc_lists_the_rules_as_shipped() -> None:
    table = {k: " ".join(v.split()) for k, v in pq.deploy_doc_rule_table().items()}
    assert table == {k: " ".join(v.split()) for k, v in pq.recording_rules().items()}


def test_every_metric_is_documented_queried_and_charted(server: Server) -> None:
    """Each family the real server exports is in METRICS.md's reference table and in a
    documented query and a dashboard query (the last two then need a truth, see above)."""
    assert server.ports is not None
    text = httpx.get(f"http://127.0.0.1:{server.ports.http}/metrics").text
    families = {
        f.name
        for f in text_string_to_metric_families(text)
        if f.name.startswith("fercomp_") and not f.name.endswith("_created")  # client's own
    }
    doc = pq.METRICS_DOC.read_text()
    by_source: dict[str, str] = {}
    for q in pq.shipped():
        by_source[q.source.split()[0]] = by_source.get(q.source.split()[0], "") + q.expr + "\n"
    for f in sorted(families):
        suffix = "_total" if f"{f}_total" in text else ""
        assert f"| `{f}{suffix}` |" in doc, f"{f}: not in the METRICS.md reference table"
        assert re.search(rf"\b{f}", by_source["docs/METRICS.md"]), f"{f}: no documented query"
        assert re.search(rf"\b{f}", by_source["dashboard"]), f"{f}: on no dashboard panel"
