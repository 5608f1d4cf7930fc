"""docs/openapi.json is what the app serves, and it says what the server answers: every route
its response and its refusals (status, ``ErrorBody``, the codes of service/http/errors.py), the
classify body's media type, and only JSON Schema keywords (issue 35)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from scripts.gen_openapi import DOC, openapi_document, render
from service.http.errors import HTTP_STATUS

# Clients, deploy/ and the docs use these paths: a router refactor must not move them.
PATHS = {
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
    "/v1/classify": {"post"},
    "/v1/models": {"get"},
    "/v1/models/swap": {"post"},
    "/v1/models/rollback": {"post"},
    "/v1/codecs/{codec_id}/manifest": {"get"},
    "/v1/codecs/{codec_id}/download": {"get"},
    "/v1/predictions": {"get"},
    "/v1/predictions/{pred_id}": {"get"},
    "/v1/predictions/{pred_id}/label": {"post"},
    "/v1/fleet": {"get"},
    "/v1/fleet/rollout": {"post"},
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document()


def test_checked_in_document_is_current(doc: dict[str, Any]) -> None:
    assert DOC.read_text() == render(doc), "run scripts/gen_openapi.py and commit docs/openapi.json"


def test_paths_are_unchanged(doc: dict[str, Any]) -> None:
    assert {p: set(ops) for p, ops in doc["paths"].items()} == PATHS


ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
# Not a refusal but a state, with a body of its own (service/http/health.py).
NOT_ERRORS = {("get", "/readyz", "503")}
# Keywords pydantic writes when a constraint lands where it cannot express it (e.g. after a
# BeforeValidator): not JSON Schema, so the document would silently not state the bound.
NOT_JSON_SCHEMA = {"ge", "gt", "le", "lt", "max_length", "min_length", "multiple_of"}


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]


def test_every_json_response_has_a_schema(doc: dict[str, Any]) -> None:
    for method, path, op in _operations(doc):
        ok = op["responses"]["200"]["content"]
        if "application/json" in ok:
            assert ok["application/json"]["schema"], f"{method} {path}: untyped 200"


def test_every_refusal_is_documented_with_its_codes(doc: dict[str, Any]) -> None:
    """No catch-all "4XX": each route lists its statuses, each the ErrorBody with the codes it
    carries, and each code is one that answers with that status."""
    for method, path, op in _operations(doc):
        assert not any(s.endswith("XX") for s in op["responses"]), f"{method} {path}: a range"
        for status, response in op["responses"].items():
            if status.startswith("2") or (method, path, status) in NOT_ERRORS:
                continue
            where = f"{method} {path} {status}"
            assert response["content"]["application/json"]["schema"] == ERROR_BODY, where
            listed = re.search(r"`error`: (.*)$", response["description"])
            assert listed, f"{where}: no codes listed"
            codes = re.findall(r"`([a-z_]+)`", listed.group(1))
            assert codes and all(HTTP_STATUS[c] == int(status) for c in codes), where
        takes_input = op.get("parameters") or "requestBody" in op
        assert not takes_input or "422" in op["responses"], f"{method} {path}: validation"


def test_classify_body_is_octets(doc: dict[str, Any]) -> None:
    op = doc["paths"]["/v1/classify"]["post"]
    assert op["requestBody"]["required"] is True
    assert op["requestBody"]["content"] == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    assert {"400", "413", "415"} <= set(op["responses"])
    # Content-Type is the body's media type, not a parameter (OpenAPI ignores one).
    assert "content-type" not in {p["name"].lower() for p in op["parameters"]}


def test_only_json_schema_keywords(doc: dict[str, Any]) -> None:
    found: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            is_schema = "type" in node or "anyOf" in node
            found.extend(f"{where}.{k}" for k in node if is_schema and k in NOT_JSON_SCHEMA)
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(doc, "$")
    assert not found, found


def test_stated_bounds(doc: dict[str, Any]) -> None:
    """The bounds schemathesis found missing (issue 35) are in the document."""
    params = {
        (path, p["name"]): p["schema"]
        for method, path, op in _operations(doc)
        for p in op.get("parameters", [])
    }
    since = params[("/v1/predictions", "since")]["anyOf"][0]
    assert since["minimum"] == -since["maximum"] and since["maximum"] > 2.5e11
    label = params[("/v1/classify", "label")]
    assert (label["minimum"], label["maximum"]) == (0, 6)
    for name in ("request_id", "client_id", "stream_id", "x-client-id"):
        assert params[("/v1/classify", name)]["maxLength"] == 128, name
    schemas = doc["components"]["schemas"]
    ref = schemas["SwapRequest"]["properties"]["ref"]
    assert re.fullmatch(ref["pattern"], "tiny-codec/1")
    for bad in ("a" * 160, "../outside", "/etc/passwd", "a/b/c"):
        assert not re.fullmatch(ref["pattern"], bad), bad
    assert schemas["SwapRequest"]["properties"]["kind"]["enum"] == ["codec", "classifier"]
    name = schemas["LabelRequest"]["properties"]["label"]["anyOf"][1]["pattern"]
    assert re.fullmatch(name, "HaPpY") and not re.fullmatch(name, "")
    assert schemas["LabelRequest"]["properties"]["label"]["anyOf"][0]["minimum"] == 0


def test_document_is_json_serialisable(doc: dict[str, Any]) -> None:
    assert json.loads(render(doc)) == doc
