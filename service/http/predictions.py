"""Stored predictions: fetch one, query with filters + cursor pagination, label after the fact.

Every parameter is typed and bounded here, so hostile input ends as a 422 ``bad_request``
before it reaches the store: cursors are ASCII integers within SQLite's INTEGER range (pydantic
refuses non-ASCII digits, e.g. Arabic-Indic or fullwidth ones), times are finite, labels are
JSON integers or expression names (``true`` is not a label).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

from core.labels import EXPRESSIONS
from service.errors import NotFound
from service.http.deps import State
from service.http.errors import JSON_BODY, VALIDATION, error_responses
from service.schemas import PredictionPage, StoredPrediction
from service.store import INT64_MAX, MAX_QUERY_LIMIT

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])

MAX_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z: later "unix seconds" are a mistake


def _iso_to_unix(value: Any) -> Any:
    """ISO 8601 (naive = UTC) -> unix seconds; anything else is left to float validation."""
    if not isinstance(value, str) or not value.isascii():
        return value  # float validation refuses non-ASCII digits
    try:
        float(value)
        return value
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be unix seconds or ISO 8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


# Unix seconds or ISO 8601; nan, inf and 1e400 (which parses to inf) are refused. The bounds
# come before the BeforeValidator: after it, pydantic writes them into the JSON schema as
# "ge"/"le" (not JSON Schema), and the document would not state them.
Timestamp = Annotated[
    float,
    Field(ge=-MAX_TIME, le=MAX_TIME, allow_inf_nan=False),
    BeforeValidator(_iso_to_unix),
]
TIME_DOC = "unix seconds; an ISO 8601 time (naive = UTC) is read too"
Expression = Literal[EXPRESSIONS]  # type: ignore[valid-type]  # the tuple of names
PredictionId = Annotated[str, Path(min_length=1, max_length=128)]
ClientId = Annotated[str | None, Query(max_length=128)]


def _any_case(word: str) -> str:
    """A regex for ``word`` in any letter case, without inline flags (JSON Schema's ECMA 262
    regexes have none): "sad" -> "[Ss][Aa][Dd]"."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in word)


#: An expression name in any case: the document's pattern and the server's check, both.
EXPRESSION_NAME = f"^({'|'.join(_any_case(e) for e in EXPRESSIONS)})$"


def _expression_index(name: str) -> int:
    return EXPRESSIONS.index(name.lower())  # the pattern admitted only the names


def _whole_number(v: object) -> object:
    """JSON Schema's integer: ``3`` and ``3.0`` (a number with no fraction) are the same value,
    so both are label 3; ``true``, ``3.5`` and ``"3"`` stay refused (StrictInt after this)."""
    if isinstance(v, float) and not isinstance(v, bool) and v.is_integer():
        return int(v)
    return v


class LabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # 0..6 (FER2013 order) as a JSON integer (3 or 3.0; not true, not 3.5, not "3"), or an
    # expression name in any case.
    label: (
        Annotated[StrictInt, Field(ge=0, le=len(EXPRESSIONS) - 1), BeforeValidator(_whole_number)]
        | Annotated[
            str, Field(max_length=16, pattern=EXPRESSION_NAME), AfterValidator(_expression_index)
        ]
    ) = Field(
        description="0..6 (FER2013 order) as a JSON integer (`3`; `3.0` is the same number), or an "
        "expression name in any case"
    )


STORE_DOWN = "The prediction store is unreachable (PostgreSQL down); retry."
GET_RESPONSES = error_responses(
    *VALIDATION,
    "not_found",
    "store_unavailable",
    notes={404: "No such prediction.", 503: STORE_DOWN},
)
LIST_RESPONSES = error_responses(*VALIDATION, "store_unavailable", notes={503: STORE_DOWN})
LABEL_RESPONSES = error_responses(
    *JSON_BODY,
    "not_found",
    "conflict",
    "store_unavailable",
    notes={
        404: "No such prediction.",
        409: "The prediction is already labelled (once only).",
        422: "`label` is not 0..6 (`3.0` counts as 3) or an expression name.",
        503: "The label was not committed to the store (retry).",
    },
)


@router.get("/{pred_id}", responses=GET_RESPONSES)
def get_prediction(pred_id: PredictionId, state: State) -> StoredPrediction:
    rec = state.store.get(pred_id)
    if rec is None:
        raise NotFound(f"no prediction {pred_id!r}")
    return StoredPrediction.model_validate(rec)


@router.get("", responses=LIST_RESPONSES)
def query_predictions(
    state: State,
    client_id: ClientId = None,
    since: Annotated[Timestamp | None, Query(description=TIME_DOC)] = None,
    until: Annotated[Timestamp | None, Query(description=TIME_DOC)] = None,
    expression: Annotated[Expression | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_QUERY_LIMIT)] = 100,
    cursor: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
) -> PredictionPage:
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    items, nxt = state.store.query(
        client_id=client_id,
        since=since,
        until=until,
        expression=expression,
        limit=limit,
        cursor=cursor,
    )
    return PredictionPage(
        items=[StoredPrediction.model_validate(i) for i in items],
        next_cursor=None if nxt is None else str(nxt),
    )


@router.post("/{pred_id}/label", responses=LABEL_RESPONSES)
def label_prediction(pred_id: PredictionId, body: LabelRequest, state: State) -> StoredPrediction:
    """Attach ground truth; updates fercomp_labelled_total / fercomp_correct_total."""
    assert isinstance(body.label, int)  # names are turned into their index by validation
    return StoredPrediction.model_validate(state.pipeline.label(pred_id, body.label))
