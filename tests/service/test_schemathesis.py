"""Contract test: schemathesis (the OpenAPI fuzzer) against the live REST app (issue 35).

Every operation of the document the app serves gets generated requests, valid and invalid: no
5xx, every status and body as documented, invalid data refused, and valid data accepted except
the refusals the document itself declares unforeseeable (tests/service/schemathesis_hooks.py).
Short and deterministic here; the full run is in docs/SERVING.md ("Contract test").
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is not installed: pip install -e '.[dev]'"
)

import jsonschema_rs  # noqa: E402  (a schemathesis dependency)
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.engine import Status, events, from_schema  # noqa: E402

from service.http import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from tests.service.conftest import Live, running  # noqa: E402
from tests.service.schemathesis_hooks import UNFORESEEABLE  # noqa: E402

CONFIG = Path(__file__).with_name("schemathesis.toml")
TOKEN = "contract-test-token"
# Generated cases per operation in the fuzzing phase; the coverage phase adds its boundary and
# mutation cases (every bound, pattern and enum of the document) whatever this is.
MAX_EXAMPLES = 50
# Checks that must have run (the config enables all of schemathesis's but positive_data_acceptance,
# which the hooks' documented_positive_data_acceptance replaces).
REQUIRED_CHECKS = {
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "documented_positive_data_acceptance", "missing_required_header", "ignored_auth",
}  # fmt: skip


@pytest.fixture(scope="module")
def live(
    model_repo: Path, tmp_path_factory: pytest.TempPathFactory, payloads_v1: list[bytes]
) -> Iterator[Live]:
    db = tmp_path_factory.mktemp("contract") / "p.sqlite3"
    settings = Settings(
        host="127.0.0.1", grpc_port=0, http_port=0, models_dir=model_repo, db_path=db,
        device="cpu", decode_isolation="inline", max_queue_delay_ms=1.0,
        admin_token=SecretStr(TOKEN),
    )  # fmt: skip
    with running(settings) as live:
        # Stored predictions, so the prediction routes answer with records too.
        for payload in payloads_v1[:3]:
            live.http.post("/v1/classify", content=payload).raise_for_status()
        yield live


@pytest.fixture(scope="module")
def api(live: Live) -> Any:
    data = tomllib.loads(CONFIG.read_text())
    data.update(
        seed=35,
        headers={"Authorization": f"Bearer {TOKEN}"},
        workers=1,
        generation={"deterministic": True, "max-examples": MAX_EXAMPLES, "database": "none"},
    )
    config = SchemathesisConfig.from_dict(data, base_dir=str(CONFIG.parent))
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(live.state), config=config)


def test_unforeseeable_refusals_are_documented(api: Any) -> None:
    """Each refusal the hooks let through is a response the document lists, with its codes."""
    paths = api.raw_schema["paths"]
    for (method, path), statuses in UNFORESEEABLE.items():
        for status, codes in statuses.items():
            response = paths[path][method.lower()]["responses"][str(status)]
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"
            }
            for code in codes:
                assert f"`{code}`" in response["description"], (method, path, status, code)
            assert "a request the schema allows can get this" in response["description"]
    label = paths["/v1/predictions/{pred_id}/label"]["post"]["responses"]["422"]["description"]
    assert "a request the schema allows can get this" not in label  # 3.0 is label 3 now


PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55")


def test_issue_35_findings(api: Any, live: Live) -> None:
    """The five valid-by-the-document requests the server refused: each is now invalid by the
    document, or refused as the document says it may be."""
    doc = api.raw_schema

    def valid(schema: dict[str, Any], value: Any) -> bool:
        root = {**schema, "components": doc["components"]}
        return bool(jsonschema_rs.validator_for(root).is_valid(value))

    def param(path: str, method: str, name: str) -> dict[str, Any]:
        params = doc["paths"][path][method]["parameters"]
        schema: dict[str, Any] = next(p["schema"] for p in params if p["name"] == name)
        return schema

    def refusal(path: str, method: str, status: int) -> str:
        description: str = doc["paths"][path][method]["responses"][str(status)]["description"]
        return description

    # since=-1.9e225: the bound is in the document now.
    assert not valid(param("/v1/predictions", "get", "since"), -1.9e225)
    r = live.http.get("/v1/predictions", params={"since": "-1.9e225"})
    assert (r.status_code, r.json()["error"]) == (422, "bad_request")
    # A PNG body: bytes the schema allows, refused with a documented 400.
    r = live.http.post("/v1/classify", content=PNG)
    assert (r.status_code, r.json()["error"]) == (400, "bad_magic")
    assert "`bad_magic`" in refusal("/v1/classify", "post", 400)
    # A 160-character swap ref: outside the document's pattern; still 400 bad_ref.
    swap = {"$ref": "#/components/schemas/SwapRequest"}
    assert not valid(swap, {"kind": "codec", "ref": "0" * 160})
    assert valid(swap, {"kind": "classifier", "ref": "tiny-codec/1"})
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = live.http.post("/v1/models/swap", json={"kind": "codec", "ref": "0" * 160}, headers=auth)
    assert (r.status_code, r.json()["error"]) == (400, "bad_ref")
    # A codec ref with kind=classifier: valid by any schema, refused with a documented 422.
    body = {"kind": "classifier", "ref": "tiny-codec/1"}
    r = live.http.post("/v1/models/swap", json=body, headers=auth)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_artifact")
    assert "`invalid_artifact`" in refusal("/v1/models/swap", "post", 422)
    # {"label": ""}: not an expression name by the document's pattern.
    assert not valid({"$ref": "#/components/schemas/LabelRequest"}, {"label": ""})
    assert valid({"$ref": "#/components/schemas/LabelRequest"}, {"label": "HaPpY"})
    r = live.http.post("/v1/predictions/x/label", json={"label": ""})
    assert (r.status_code, r.json()["error"]) == (422, "bad_request")


def test_rest_api_honours_its_openapi_document(api: Any) -> None:
    """The CLI's run (coverage and fuzzing phases, every check the config enables: no 5xx,
    statuses, content types, headers and bodies as documented, invalid data refused, valid data
    accepted but for the documented refusals, auth enforced), bounded, with 0 failures."""
    requests, ran, problems = 0, set(), []
    for event in from_schema(api).execute():
        if isinstance(event, events.ScenarioFinished):
            requests += len(event.recorder.interactions)
            for checks in event.recorder.checks.values():
                for check in checks:
                    ran.add(check.name)
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        info = check.failure_info
                        problems.append(
                            f"{event.recorder.label}: {check.name}: {info.failure.title}\n"
                            f"{info.failure.message}\n{info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            problems.append(f"error: {event!r}")
        elif isinstance(event, events.EngineFinished):
            problems += [f"after run: {f.title}: {f.message}" for f in event.failures]
    assert not problems, "\n\n".join(problems)
    assert requests > 500, f"only {requests} requests: the run did not reach the API"
    assert ran >= REQUIRED_CHECKS, f"checks that never ran: {REQUIRED_CHECKS - ran}"
    assert "positive_data_acceptance" not in ran  # replaced, not run beside the replacement
