"""What a stored prediction is, independent of the database: its columns, how a ``Prediction``
becomes a row and a row a record, and the bounds every backend applies to queries."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.errors import InvalidField
from service.types import Prediction

COLUMNS = (
    "id", "request_id", "client_id", "stream_id", "created_at", "expression", "probabilities",
    "codec_version", "codec_id", "classifier_version", "bytes", "label", "transport",
)  # fmt: skip
INT64_MAX = 2**63 - 1  # SQLite INTEGER and PostgreSQL BIGINT: Python ints beyond it cannot bind
MAX_QUERY_LIMIT = 1000


def insert_sql(placeholder: str) -> str:
    marks = ", ".join([placeholder] * len(COLUMNS))
    return f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({marks})"


def storable(text: str) -> bool:
    """Whether ``text`` can be stored and looked up by both backends: PostgreSQL text has no
    NUL character, and neither driver can encode a lone surrogate (which a JSON ``\\udc80``
    escape decodes to) as UTF-8."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def prediction_row(p: Prediction) -> tuple[Any, ...]:
    """The row for ``p`` in ``COLUMNS`` order; InvalidField for a string field no backend can
    store (refused for this request alone, before it reaches a group commit)."""
    values = (
        p.id, p.request_id, p.client_id, p.stream_id, p.created_at, p.expression_name,
        json.dumps(list(p.probabilities)), p.codec_version, p.codec_id, p.classifier_version,
        p.received_bytes, p.label, p.transport,
    )  # fmt: skip
    for name, value in zip(COLUMNS, values, strict=True):
        if isinstance(value, str) and not storable(value):
            raise InvalidField(f"{name} contains a NUL or an unpaired surrogate character")
    return values


def record_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    rec = {c: row[c] for c in COLUMNS}
    rec["probabilities"] = json.loads(rec["probabilities"])
    return rec


def check_int64(value: int, name: str) -> int:
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise ValueError(f"{name} {value} is outside the store's 64-bit INTEGER range")
    return value


@dataclass(frozen=True)
class Query:
    """Filters of ``PredictionStore.query``, bounded so every backend can bind them."""

    client_id: str | None = None
    since: float | None = None
    until: float | None = None
    expression: str | None = None
    limit: int = 100
    cursor: int | None = None

    @classmethod
    def bounded(
        cls,
        client_id: str | None,
        since: float | None,
        until: float | None,
        expression: str | None,
        limit: int,
        cursor: int | None,
    ) -> Query:
        for name, t in (("since", since), ("until", until)):
            if t is not None and not math.isfinite(t):
                raise ValueError(f"{name} must be a finite number of seconds, got {t}")
        if cursor is not None:
            # seq is in 1..INT64_MAX, so clamping changes no answer and keeps the drivers'
            # binding from overflowing on huge cursors.
            cursor = min(max(cursor, 0), INT64_MAX)
        limit = min(max(limit, 0), MAX_QUERY_LIMIT)
        return cls(client_id, since, until, expression, limit, cursor)

    @property
    def matches_nothing(self) -> bool:
        """A filter string no row can hold (see ``storable``)."""
        return any(v is not None and not storable(v) for v in (self.client_id, self.expression))

    def sql(self, placeholder: str) -> tuple[str, list[Any]]:
        """SELECT seq and the columns, newest first, one row more than ``limit`` (to tell
        whether there is a next page)."""
        where, args = [], []
        for cond, val in (
            ("client_id = ", self.client_id), ("created_at >= ", self.since),
            ("created_at < ", self.until), ("expression = ", self.expression),
            ("seq < ", self.cursor),
        ):  # fmt: skip
            if val is not None:
                where.append(cond + placeholder)
                args.append(val)
        sql = f"SELECT seq, {', '.join(COLUMNS)} FROM predictions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql + f" ORDER BY seq DESC LIMIT {placeholder}", [*args, self.limit + 1]
