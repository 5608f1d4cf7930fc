"""Request id in and out, and one log line per request, as a pure ASGI middleware.

``@app.middleware("http")`` builds Starlette's ``BaseHTTPMiddleware``, which runs the rest of
the app in a task of its own and pipes its response through memory streams: on POST
/v1/classify that cost more than the route itself (docs/SERVING.md "Speed"). This one only
wraps ``send`` to add the header and note the status.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from proto.wire import REQUEST_ID_KEY
from service.logs import request_id_or_new, request_id_var

log = logging.getLogger("fercomp.service.http")
_HEADER = REQUEST_ID_KEY.encode("latin-1")  # ASGI header names are lower-case bytes


class RequestContext:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                sent = value.decode("latin-1")
                break
        rid = request_id_or_new(sent)
        status = 500  # what the client gets if the app fails before answering
        token = request_id_var.set(rid)
        t0 = time.perf_counter()

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (_HEADER, rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            ms = (time.perf_counter() - t0) * 1e3
            path = scope["path"]
            log.info(
                "http %s %s %d", scope["method"], path, status,
                extra={"request_id": rid, "path": path, "status": status,
                       "duration_ms": round(ms, 3)},
            )  # fmt: skip
