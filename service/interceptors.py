"""gRPC server interceptor: request ids, timing and one structured log line per call.

The request id comes from the ``x-request-id`` metadata (or is generated), is echoed back in
the TRAILING metadata and is put in ``logs.request_id_var`` for every log line of the call.

Trailing, not initial: sending initial metadata before the handler runs commits the call, and
a client's gRPC retry policy never retries a committed call, so an UNAVAILABLE the handler
returns (a draining server) would reach the client instead of being retried. Trailers go out
with the status, success or failure, so the id stays visible to every client.

With a ``CallRouting`` the interceptor also decides which thread pool runs each call. gRPC
calls ``intercept_service`` on its polling thread, before the call is handed to any pool, so
this is where a call is admitted into the RPC budget or refused (service/admission.py), and
where health checks and reflection are sent to pools of their own (gRPC's per-handler
``experimental_thread_pool``, the mechanism ``grpc_health``'s ``HealthServicer`` uses too).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from proto.wire import REQUEST_ID_KEY
from service.admission import RpcBudget
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


# gRPC (grpc/_server.py) runs a handler on the pool in its behavior's attribute of this name
# instead of the server's pool, when that is a ThreadPoolExecutor.
POOL_ATTRIBUTE = "experimental_thread_pool"
# A behavior with this attribute set answers through a callback and returns at once (the
# health service's Watch): it holds no thread, and must not be wrapped in a generator.
NON_BLOCKING_ATTRIBUTE = "experimental_non_blocking"


class CallbackThread:
    """Runs callbacks one at a time, in order, on a daemon thread of its own (started on first
    use): the send callbacks of non-blocking handlers.

    The health service's Watch is non-blocking: ``HealthServicer.set`` calls each watcher's
    send callback while it holds the servicer's lock, and gRPC's send waits until its polling
    thread has seen the message go out. That polling thread is also where a cancelled watch
    runs its close callback, which takes the same lock: a watcher that leaves while the status
    changes (at shutdown, say) deadlocks the two. Deferred here, the callback returns at once,
    the lock is let go, and the send waits on this thread instead. Daemon: a send that can no
    longer complete must not keep the interpreter from exiting.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[tuple[Callable[[Any], Any], Any]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def defer(self, fn: Callable[[Any], Any]) -> Callable[[Any], None]:
        def deferred(arg: Any) -> None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                    self._thread.start()
            self._queue.put((fn, arg))

        return deferred

    def _run(self) -> None:
        while True:
            fn, arg = self._queue.get()
            try:
                fn(arg)
            except Exception:
                log.exception("deferred gRPC callback failed")


@dataclass(frozen=True)
class CallRouting:
    """Which pool runs a call: a service in ``reserved`` runs on its own pool, outside the
    budget; any other call runs on ``budget`` (the server's pool) while it has room, and is
    otherwise handed to ``refuse`` on the ``refusals`` pool, which must end the call (abort).
    Non-blocking handlers' send callbacks run on ``callbacks``."""

    budget: RpcBudget
    reserved: Mapping[str, ThreadPoolExecutor]  # full service name -> its pool
    refusals: ThreadPoolExecutor
    refuse: Callable[[str, grpc.ServicerContext], NoReturn]  # (method, context)
    callbacks: CallbackThread

    def pool_for(self, method: str) -> ThreadPoolExecutor | None:
        """The reserved pool of ``method``'s service ("/pkg.Service/Method"), if it has one."""
        return self.reserved.get(method.lstrip("/").rpartition("/")[0])


def _on_pool(behavior: Callable[..., Any], pool: ThreadPoolExecutor | None) -> Callable[..., Any]:
    if pool is not None:
        behavior.__dict__[POOL_ATTRIBUTE] = pool
    return behavior


def _refusal(
    handler: grpc.RpcMethodHandler,
    refuse: Callable[[str, grpc.ServicerContext], NoReturn],
    method: str,
) -> grpc.RpcMethodHandler:
    """``handler`` with its behavior replaced by ``refuse`` (a request stream is never read)."""

    def refused(request: Any, context: grpc.ServicerContext) -> NoReturn:
        refuse(method, context)

    def refused_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        refuse(method, context)
        yield  # unreachable: makes this a generator, the shape a streaming behavior has

    for kind in ("unary_unary", "stream_unary"):
        if getattr(handler, kind):
            return handler._replace(**{kind: refused})
    for kind in ("unary_stream", "stream_stream"):
        if getattr(handler, kind):
            return handler._replace(**{kind: refused_stream})
    return handler


class RequestContextInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, routing: CallRouting | None = None) -> None:
        self.routing = routing

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        pool: ThreadPoolExecutor | None = None  # None: the server's pool (the budget)
        if self.routing is not None:
            pool = self.routing.pool_for(method)
            if pool is None and self.routing.budget.full():
                handler = _refusal(handler, self.routing.refuse, method)
                pool = self.routing.refusals
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

        callbacks = self.routing.callbacks if self.routing is not None else None

        def non_blocking(behavior: Callable[..., Any]) -> Callable[..., Any]:
            """Returns as soon as the call is set up (logged then); answers go through the
            callback, run on ``callbacks``' thread when there is one."""

            def wrapped(
                request: Any, context: grpc.ServicerContext, send: Callable[[Any], None]
            ) -> Any:
                token, t0 = begin(context)
                ok = False
                try:
                    out = behavior(request, context, callbacks.defer(send) if callbacks else send)
                    ok = True
                    return out
                finally:
                    end(context, token, t0, ok)

            wrapped.__dict__[NON_BLOCKING_ATTRIBUTE] = True
            return wrapped

        for kind, wrap in (
            ("unary_unary", unary),
            ("stream_unary", unary),
            ("unary_stream", streaming),
            ("stream_stream", streaming),
        ):
            behavior = getattr(handler, kind)
            if behavior:
                if getattr(behavior, NON_BLOCKING_ATTRIBUTE, False):
                    wrap = non_blocking
                return handler._replace(**{kind: _on_pool(wrap(behavior), pool)})
        return handler
