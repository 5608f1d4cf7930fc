"""Stored predictions: fetch one, query with filters + cursor pagination, label after the fact."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from core.classifier import EXPRESSIONS
from service.errors import BadRequest, NotFound
from service.http.deps import State

router = APIRouter(tags=["predictions"])


class LabelRequest(BaseModel):
    label: int | str  # 0..6 (FER2013 order) or an expression name


def _time(value: str | None, name: str) -> float | None:
    """Unix seconds or ISO 8601 (naive = UTC)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be unix seconds or ISO 8601, got {value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _cursor(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise BadRequest(f"invalid cursor {value!r}")
    return int(value)


@router.get("/v1/predictions/{pred_id}")
def get_prediction(pred_id: str, state: State) -> dict[str, Any]:
    rec = state.store.get(pred_id)
    if rec is None:
        raise NotFound(f"no prediction {pred_id!r}")
    return rec


@router.get("/v1/predictions")
def query_predictions(
    state: State,
    client_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    expression: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    if expression is not None and expression not in EXPRESSIONS:
        raise BadRequest(f"expression must be one of {', '.join(EXPRESSIONS)}")
    items, nxt = state.store.query(
        client_id=client_id,
        since=_time(since, "since"),
        until=_time(until, "until"),
        expression=expression,
        limit=limit,
        cursor=_cursor(cursor),
    )
    return {"items": items, "next_cursor": None if nxt is None else str(nxt)}


@router.post("/v1/predictions/{pred_id}/label")
def label_prediction(pred_id: str, body: LabelRequest, state: State) -> dict[str, Any]:
    """Attach ground truth; updates fercomp_labelled_total / fercomp_correct_total."""
    label = body.label
    if isinstance(label, str):
        if label.lower() not in EXPRESSIONS:
            raise BadRequest(f"label must be 0..6 or one of {', '.join(EXPRESSIONS)}")
        label = EXPRESSIONS.index(label.lower())
    return state.pipeline.label(pred_id, label)
