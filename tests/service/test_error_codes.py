"""Every machine code has one HTTP and one gRPC status, and docs/SERVING.md says the same."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest

from core.artifacts import ArtifactError, ArtifactNotFound, ModelRepository
from service.errors import SWAP_CODES, BadRequest, QueueFull, SwapError, error_code
from service.grpc_status import GRPC_STATUS, grpc_status_for
from service.http.errors import HTTP_STATUS, error_response
from service.metrics import request_statuses

SERVING_MD = Path(__file__).resolve().parents[2] / "docs" / "SERVING.md"
REQUEST_CODES = [c for c in request_statuses() if c != "ok"]


def test_every_request_code_has_an_http_and_a_grpc_status() -> None:
    # request_statuses() walks the error classes, so a new class without a status fails here.
    assert set(REQUEST_CODES) - set(HTTP_STATUS) == set()
    assert set(REQUEST_CODES) - set(GRPC_STATUS) == set()


def test_every_swap_code_has_an_http_status() -> None:
    assert set(SWAP_CODES) - set(HTTP_STATUS) == set()


def test_statuses_come_from_the_code_alone() -> None:
    assert error_response(QueueFull("full")).status_code == 429
    assert error_response(SwapError("swap_in_progress", "busy")).status_code == 409
    assert error_response(SwapError("bad_ref", "../x")).status_code == 400
    assert grpc_status_for(BadRequest("x")) == grpc.StatusCode.INVALID_ARGUMENT
    unexpected = error_response(RuntimeError("secret path /etc"))
    assert (unexpected.status_code, unexpected.body) == (
        500,
        b'{"error":"internal","detail":"internal error"}',
    )
    assert error_code(RuntimeError()) == "internal"


def _doc_rows(header: str) -> list[list[str]]:
    """The rows of the markdown table that starts with ``header``."""
    lines = SERVING_MD.read_text().splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _codes_with(cell_codes: str, cell_status: str, pattern: str) -> list[tuple[str, str]]:
    """Pairs (code, status) from cells like "`a` / `b`" and "413 / 422" (one status: all)."""
    codes = re.findall(r"`([a-z_]+)`", cell_codes)
    statuses = re.findall(pattern, cell_status)
    assert codes and statuses, (cell_codes, cell_status)
    return list(zip(codes, statuses * len(codes) if len(statuses) == 1 else statuses, strict=True))


def test_serving_md_error_table_matches_the_status_tables() -> None:
    rows = _doc_rows("| Cause | gRPC status | REST status | code |")
    assert rows
    for _, grpc_cell, rest_cell, code_cell in rows:
        # "—": the failure cannot happen on that transport (compact stream framing is gRPC's)
        if rest_cell.strip() != "—":
            for code, status in _codes_with(code_cell, rest_cell, r"\d{3}"):
                assert HTTP_STATUS[code] == int(status), code
        if grpc_cell.strip() != "—":
            for code, name in _codes_with(code_cell, grpc_cell, r"[A-Z_]{4,}"):
                assert GRPC_STATUS[code].name == name, code


def test_serving_md_swap_table_matches_the_http_table() -> None:
    rows = _doc_rows("| Failure | HTTP | `error` |")
    documented = {}
    for _, http_cell, code_cell in rows:
        documented.update(_codes_with(code_cell, http_cell, r"\d{3}"))
    assert {c: HTTP_STATUS[c] for c in documented} == {c: int(s) for c, s in documented.items()}
    # nothing_to_rollback and bad_request (unknown kind) are described in the text instead
    assert set(SWAP_CODES) - set(documented) <= {"nothing_to_rollback", "bad_request"}


@pytest.mark.parametrize("ref", ["nope/1", "nope"])
def test_a_missing_artifact_is_not_found(tmp_path: Path, ref: str) -> None:
    with pytest.raises(ArtifactNotFound):
        ModelRepository(tmp_path).path(ref)


@pytest.mark.parametrize("ref", ["../outside/1", "a/b/c", "bad name/1"])
def test_a_malformed_ref_is_not_a_missing_one(tmp_path: Path, ref: str) -> None:
    with pytest.raises(ArtifactError) as e:
        ModelRepository(tmp_path).path(ref)
    assert not isinstance(e.value, ArtifactNotFound)
