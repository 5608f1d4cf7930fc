"""docs/openapi.json is what the app serves, and every JSON route documents its response."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scripts.gen_openapi import DOC, openapi_document, render

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
}


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document()


def test_checked_in_document_is_current(doc: dict[str, Any]) -> None:
    assert DOC.read_text() == render(doc), "run scripts/gen_openapi.py and commit docs/openapi.json"


def test_paths_are_unchanged(doc: dict[str, Any]) -> None:
    assert {p: set(ops) for p, ops in doc["paths"].items()} == PATHS


def test_every_json_response_has_a_schema(doc: dict[str, Any]) -> None:
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = op["responses"]["200"]["content"]
            if "application/json" in ok:
                assert ok["application/json"]["schema"], f"{method} {path}: untyped 200"
            errors = op["responses"]["4XX"]["content"]["application/json"]["schema"]
            assert errors == {"$ref": "#/components/schemas/ErrorBody"}, f"{method} {path}"


def test_document_is_json_serialisable(doc: dict[str, Any]) -> None:
    assert json.loads(render(doc)) == doc
