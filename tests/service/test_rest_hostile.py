"""Hostile REST input: every parameter of every route, enumerated from the app itself, gets the
values that once caused 500s or were wrongly accepted (issue 9), against the real server.
Nothing may answer 5xx, and every refusal uses the standard ``{"error", "detail"}`` body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute

from service.http import create_app
from tests.service.conftest import Live, running

# Query, path and header values. Each was a 500 or a silent accept before: SQLite INTEGER
# overflow, Python's 4300-digit int limit, Unicode digits, non-finite floats.
HOSTILE = [
    "9223372036854775808", "1" + "0" * 30, "9" * 5000, "-9223372036854775809", "²", "٣", "\uff11",
    "nan", "NaN", "inf", "-inf", "1e400", "-1", "0", "", " ", "true", "null", "\x00", "%",
    "a" * 5000, "../../etc/passwd", "1; DROP TABLE predictions", "2024-13-45T99:99",
]  # fmt: skip
# JSON tokens put in place of one body field; the raw text, since some are not valid JSON
# (NaN, Infinity) or not representable after parsing (1e400 -> inf, 5000 digits).
HOSTILE_JSON = [
    "true", "false", "null", "1e400", "-1e400", "NaN", "Infinity", "9" * 5000,
    str(2**63), str(-(2**63) - 1), str(10**30), "-1", "3.0", '"3"', '"٣"', '"\uff11"', '"²"',
    '"nan"', "[]", "{}", "[3]", '{"$gt": 0}', json.dumps("a" * 5000), '"\\u0000"',
]  # fmt: skip
# Whole bodies for JSON routes: not JSON, wrong shape, deep nesting.
HOSTILE_BODIES = [b"", b"not json", b"[]", b"null", b"{" * 5000, b"[" * 100_000, b"\xff\xfe"]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    query: tuple[str, ...]
    path_params: tuple[str, ...]
    headers: tuple[str, ...]
    body_fields: dict[str, Any]  # field -> a plausible value for when another field is tested


def _flat(dependant: Any, kind: str) -> list[Any]:
    out = list(getattr(dependant, kind))
    for sub in dependant.dependencies:
        out += _flat(sub, kind)
    return out


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):  # include_router() wraps routers (FastAPI >= 0.120)
            yield from _api_routes(r.original_router.routes)


def _plausible(schema: dict[str, Any]) -> Any:
    return schema["enum"][0] if "enum" in schema else "x"


def enumerate_routes(app: Any) -> list[Route]:
    out = []
    for r in _api_routes(app.routes):
        d = r.dependant
        fields: dict[str, Any] = {}
        if r.body_field is not None:
            model = r.body_field.field_info.annotation
            props = model.model_json_schema()["properties"]
            fields = {name: _plausible(s) for name, s in props.items()}
        for method in sorted(r.methods - {"HEAD"}):
            out.append(
                Route(
                    method, r.path,
                    tuple(f.alias for f in _flat(d, "query_params")),
                    tuple(f.alias for f in _flat(d, "path_params")),
                    tuple(f.alias for f in _flat(d, "header_params")),
                    fields,
                )
            )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def live(model_repo, tmp_path_factory) -> Iterator[Live]:
    from service.settings import Settings

    db = tmp_path_factory.mktemp("hostile") / "p.sqlite3"
    settings = Settings(grpc_port=0, http_port=0, models_dir=model_repo, db_path=db, device="cpu")
    with running(settings) as live:
        yield live


@pytest.fixture(scope="module")
def routes(live: Live) -> list[Route]:
    return enumerate_routes(create_app(live.state))


def check(r: httpx.Response, what: str) -> None:
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error", "detail"} and body["error"], f"{what}: {body}"


def url(route: Route, overrides: dict[str, str] | None = None) -> str:
    path = route.path
    for name in route.path_params:
        value = (overrides or {}).get(name, "active" if name == "codec_id" else "nope")
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def test_enumeration_covers_the_app(live: Live, routes: list[Route]) -> None:
    documented = {
        (m.upper(), p) for p, ops in live.http.get("/openapi.json").json()["paths"].items()
        for m in ops
    }  # fmt: skip
    assert {(r.method, r.path) for r in routes} == documented
    params = {p for r in routes for p in (*r.query, *r.path_params, *r.headers, *r.body_fields)}
    assert {
        "cursor", "limit", "since", "until", "expression", "client_id", "label", "request_id",
        "stream_id", "pred_id", "codec_id", "content-type", "x-client-id", "kind", "ref",
    } <= params  # fmt: skip


def test_hostile_query_path_and_header_values(live: Live, routes: list[Route]) -> None:
    for route in routes:
        for value in HOSTILE:
            for name in route.query:
                what = f"{route.method} {route.path}?{name}={value[:20]!r}"
                r = live.http.request(route.method, url(route), params={name: value})
                check(r, what)
            for name in route.path_params:
                what = f"{route.method} {route.path} {name}={value[:20]!r}"
                check(live.http.request(route.method, url(route, {name: value})), what)
            if value.isprintable() and value == value.strip() != "":  # else h11 won't send it
                for name in route.headers:
                    what = f"{route.method} {route.path} {name}: {value[:20]!r}"
                    headers = {name: value.encode()}
                    check(live.http.request(route.method, url(route), headers=headers), what)


def test_hostile_json_bodies(live: Live, routes: list[Route]) -> None:
    json_routes = [r for r in routes if r.body_fields]
    assert {r.path for r in json_routes} == {
        "/v1/models/swap", "/v1/models/rollback", "/v1/predictions/{pred_id}/label",
        "/v1/fleet/rollout",
    }  # fmt: skip
    octets = {"content-type": "application/json"}
    for route in json_routes:
        for field in route.body_fields:
            for token in HOSTILE_JSON:
                others = {k: v for k, v in route.body_fields.items() if k != field}
                text = json.dumps(others)[:-1] + (", " if others else "") + f'"{field}": {token}}}'
                r = live.http.request(route.method, url(route), content=text, headers=octets)
                check(r, f"{route.method} {route.path} {field}={token[:20]}")
        for body in HOSTILE_BODIES:
            r = live.http.request(route.method, url(route), content=body, headers=octets)
            check(r, f"{route.method} {route.path} body {body[:20]!r}")


# -- the cases, one by one, with the answer each must get ------------------------------
@pytest.mark.parametrize(
    "cursor",
    ["9223372036854775808", str(10**30), "9" * 5000, "²", "٣", "\uff11", "-1", "1.5", "x"],
)
def test_bad_cursor_is_422(live: Live, cursor: str) -> None:
    r = live.http.get("/v1/predictions", params={"cursor": cursor})
    assert (r.status_code, r.json()["error"]) == (422, "bad_request"), r.text
    assert "cursor" in r.json()["detail"]


def test_largest_cursor_is_fine(live: Live) -> None:
    r = live.http.get("/v1/predictions", params={"cursor": str(2**63 - 1)})
    assert r.status_code == 200 and r.json()["items"] == []  # nothing stored in this module yet


@pytest.mark.parametrize("since", ["nan", "inf", "-inf", "1e400", "٣", "yesterday"])
def test_non_finite_or_bad_time_is_422(live: Live, since: str) -> None:
    for name in ("since", "until"):
        r = live.http.get("/v1/predictions", params={name: since})
        assert (r.status_code, r.json()["error"]) == (422, "bad_request"), r.text


def test_times_accept_unix_seconds_and_iso(live: Live) -> None:
    for since in ("1700000000", "1700000000.5", "2024-01-01T00:00:00Z", "2024-01-01"):
        assert live.http.get("/v1/predictions", params={"since": since}).status_code == 200


@pytest.mark.parametrize(
    "label", ["true", "false", "3.5", '"3"', "7", "7.0", "-1", "1e400", "null"]
)
def test_label_must_be_an_integer_or_a_name(
    live: Live, payloads_v1: list[bytes], label: str
) -> None:
    pid = live.http.post("/v1/classify", content=payloads_v1[0]).json()["prediction_id"]
    path = f"/v1/predictions/{pid}/label"
    body = f'{{"label": {label}}}'.encode()
    r = live.http.post(path, content=body, headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]) == (422, "bad_request"), r.text
    assert "label" in r.json()["detail"], r.text  # refused for its label, not as unparsed
    assert live.http.get(f"/v1/predictions/{pid}").json()["label"] is None  # nothing stored
    ok = live.http.post(path, json={"label": "HAPPY"})
    assert ok.status_code == 200 and live.http.get(f"/v1/predictions/{pid}").json()["label"] == 3


def test_a_label_written_with_a_zero_fraction_is_that_integer(
    live: Live, payloads_v1: list[bytes]
) -> None:
    """JSON Schema's integer type admits 3.0 as 3 (the OpenAPI document's contract)."""
    pid = live.http.post("/v1/classify", content=payloads_v1[0]).json()["prediction_id"]
    path = f"/v1/predictions/{pid}/label"
    body = b'{"label": 3.0}'
    r = live.http.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert live.http.get(f"/v1/predictions/{pid}").json()["label"] == 3


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/json", "multipart/form-data; boundary=x", "image/png"],
)
def test_classify_refuses_other_content_types(
    live: Live, payloads_v1: list[bytes], content_type: str
) -> None:
    r = live.http.post(
        "/v1/classify", content=payloads_v1[0], headers={"content-type": content_type}
    )
    assert (r.status_code, r.json()["error"]) == (415, "unsupported_media_type"), r.text


@pytest.mark.parametrize(
    "content_type", [None, "application/octet-stream", "Application/Octet-Stream; x=1"]
)
def test_classify_accepts_octets(live: Live, payloads_v1: list[bytes], content_type) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    assert (
        live.http.post("/v1/classify", content=payloads_v1[1], headers=headers).status_code == 200
    )


def test_json_bodies_are_capped(live: Live) -> None:
    big = b'{"label": "' + b"a" * 100_000 + b'"}'
    r = live.http.post("/v1/predictions/nope/label", content=big)
    assert (r.status_code, r.json()["error"]) == (413, "payload_too_large")

    def chunks() -> Iterator[bytes]:
        yield b'{"label": 1}'

    r = live.http.post("/v1/predictions/nope/label", content=chunks())  # chunked, no length
    assert (r.status_code, r.json()["error"]) == (411, "length_required")
