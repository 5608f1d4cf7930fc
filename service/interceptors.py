"""gRPC server interceptor: request ids, timing and one structured log line per call.

The request id comes from the ``x-request-id`` metadata (or is generated), is echoed back as
initial metadata and is put in ``logs.request_id_var`` for every log line of the call.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from service.logs import request_id_or_new, request_id_var

log = logging.getLogger("fercomp.service.grpc")
REQUEST_ID_KEY = "x-request-id"


def _code_name(context: grpc.ServicerContext, default: grpc.StatusCode) -> str:
    code = getattr(context, "code", lambda: None)()  # set by abort()/set_code()
    return str(code.name) if isinstance(code, grpc.StatusCode) else default.name


class RequestContextInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        metadata = dict(details.invocation_metadata or ())
        rid = request_id_or_new(str(metadata.get(REQUEST_ID_KEY) or ""))

        def begin(context: grpc.ServicerContext) -> tuple[Any, float]:
            token = request_id_var.set(rid)
            with contextlib.suppress(ValueError):  # already sent: harmless
                context.send_initial_metadata(((REQUEST_ID_KEY, rid),))
            return token, time.perf_counter()

        def end(context: grpc.ServicerContext, token: Any, t0: float, ok: bool) -> None:
            code = _code_name(context, grpc.StatusCode.OK if ok else grpc.StatusCode.UNKNOWN)
            ms = (time.perf_counter() - t0) * 1e3
            log.info(
                "grpc %s %s",
                method,
                code,
                extra={"method": method, "code": code, "duration_ms": round(ms, 3)},
            )
            # A generator resumed in another context has nothing to restore.
            with contextlib.suppress(ValueError):
                request_id_var.reset(token)

        def unary(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                token, t0 = begin(context)
                ok = False
                try:
                    out = behavior(request, context)
                    ok = True
                    return out
                finally:
                    end(context, token, t0, ok)

            return wrapped

        def streaming(behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                token, t0 = begin(context)
                ok = False
                try:
                    yield from behavior(request, context)
                    ok = True
                finally:
                    end(context, token, t0, ok)

            return wrapped

        if handler.unary_unary:
            return handler._replace(unary_unary=unary(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=unary(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=streaming(handler.unary_stream))
        if handler.stream_stream:
            return handler._replace(stream_stream=streaming(handler.stream_stream))
        return handler
