"""Body size cap for the JSON routes (POST /v1/classify streams its body and caps it itself).

Pure ASGI, so it answers before FastAPI reads a byte: a declared ``Content-Length`` over the
cap gets 413, a JSON body without one (chunked) gets 411, and h11 never reads past a declared
length, so the cap holds without buffering anything.
"""

from __future__ import annotations

from typing import Any

from service.http.errors import error_json

JSON_BODY_LIMIT = 64 * 1024  # the largest JSON body any route takes is well under 1 KiB
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class JsonBodyLimit:
    def __init__(self, app: Any, limit: int = JSON_BODY_LIMIT, exempt: tuple[str, ...] = ()):
        self.app = app
        self.limit = limit
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _BODY_METHODS
            or scope["path"] in self.exempt
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None and b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            refusal = error_json("length_required", "a JSON body needs a Content-Length")
        elif declared is not None and (
            not (declared.isascii() and declared.isdigit()) or int(declared) > self.limit
        ):
            refusal = error_json(
                "payload_too_large", f"JSON bodies are limited to {self.limit} bytes"
            )
        else:
            await self.app(scope, receive, send)
            return
        await refusal(scope, receive, send)
