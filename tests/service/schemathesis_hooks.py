"""schemathesis hooks for the REST API: the refusals of schema-valid requests the OpenAPI document
itself declares unforeseeable, and nothing else, pass ``positive_data_acceptance``.

Loaded by tests/service/schemathesis.toml (``hooks``), so the short run in
tests/service/test_schemathesis.py and the full run (docs/SERVING.md) judge alike.

Two refusals of a request the schema allows cannot be ruled out by any schema, and the
document says so in the response it lists for each (service/http/classify.py and models.py):

* ``POST /v1/classify``: the body's schema is any bytes; bytes that are not a bitstream this
  server decodes get 400 (a bitstream code) or, for a well-formed bitstream of a codec it has
  not loaded, 422 ``unknown_codec``.
* ``POST /v1/models/swap``: what a well-formed ``ref`` names is the repository's content: a ref
  of the other kind (a codec's ref with ``kind: classifier``), or a broken artifact, is 422.
  ``POST /v1/fleet/rollout`` likewise (a classifier's ref as ``codec``).

``documented_positive_data_acceptance`` is schemathesis's ``positive_data_acceptance`` (which the
config turns off) less exactly these: that operation, that status, one of those error codes.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.http.errors import BITSTREAM_CODES

#: (method, path) -> {status: error codes} of the refusals above.
UNFORESEEABLE: dict[tuple[str, str], dict[int, tuple[str, ...]]] = {
    ("POST", "/v1/classify"): {400: BITSTREAM_CODES, 422: ("unknown_codec",)},
    ("POST", "/v1/models/swap"): {
        422: ("invalid_artifact", "smoke_test_failed", "incompatible"),
    },
    ("POST", "/v1/fleet/rollout"): {422: ("invalid_artifact",)},
}


def _error_code(response: Any) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("error") if isinstance(body, dict) else None


@schemathesis.check
def documented_positive_data_acceptance(ctx: Any, response: Any, case: Any) -> bool | None:
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        op = (case.operation.method.upper(), case.operation.path)
        code = _error_code(response)
        if code in UNFORESEEABLE.get(op, {}).get(response.status_code, ()):
            return None
        raise
