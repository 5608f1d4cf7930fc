"""Structured logs: one JSON object (or key=value line) per record, with the request id.

The request id lives in a ``ContextVar`` set by the gRPC interceptor / HTTP middleware, so any
log call made while handling a request carries it without passing it around.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str] = ContextVar("fercomp_request_id", default="")
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_or_new(value: str | None) -> str:
    """A client's ``x-request-id`` when it is a sane token (it ends up in logs and the store),
    else a fresh id: a bad header is not worth refusing a request over."""
    if value and _REQUEST_ID_RE.fullmatch(value):
        return value
    return uuid.uuid4().hex[:16]


_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool) -> None:
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            fields["request_id"] = rid
        # Anything passed with ``extra={...}`` becomes a field of its own.
        fields.update({k: v for k, v in vars(record).items() if k not in _STD_ATTRS})
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(fields, default=str)
        return " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())


def configure_logging(level: str = "INFO", as_json: bool = True) -> None:
    """Route the ``fercomp`` and ``uvicorn`` loggers to stderr in the structured format.

    Called by ``fercomp serve``; library users (tests, notebooks) keep their own logging.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(as_json))
    for name in ("fercomp", "uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level.upper())
        lg.propagate = False
