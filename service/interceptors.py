"""gRPC server interceptor: request ids, timing and one structured log line per call.

The request id comes from the ``x-request-id`` metadata (or is generated), is echoed back in
the TRAILING metadata and is put in ``logs.request_id_var`` for every log line of the call.

Trailing, not initial: sending initial metadata before the handler runs commits the call, and
a client's gRPC retry policy never retries a committed call, so an UNAVAILABLE the handler
returns (a draining server) would reach the client instead of being retried. Trailers go out
with the status, success or failure, so the id stays visible to every client.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from proto.wire import REQUEST_ID_KEY
from service.logs import request_id_or_new, request_id_var

log = logging.getLogger("fercomp.service.grpc")


def add_trailing_metadata(context: grpc.ServicerContext, *pairs: tuple[str, str]) -> None:
    """Add ``pairs`` to the call's trailing metadata; ``set_trailing_metadata`` alone would
    replace what the interceptor or the handler put there before."""
    keys = {k for k, _ in pairs}
    kept = [(k, v) for k, v in (context.trailing_metadata() or ()) if k not in keys]
    context.set_trailing_metadata((*kept, *pairs))


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
            add_trailing_metadata(context, (REQUEST_ID_KEY, rid))
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
