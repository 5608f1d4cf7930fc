"""gRPC transport: translates protobuf <-> ``Pipeline`` calls and errors <-> status codes.

Also registers the standard ``grpc.health.v1`` service (NOT_SERVING until models are loaded
and again during shutdown) and server reflection (so grpcurl works without the .proto).

Thread pools (service/admission.py): ``FerService`` calls run on the ``grpc_workers`` pool,
at most ``grpc_max_concurrent_rpcs`` of them running or waiting for a thread; past that they
are refused at once on a pool of their own. Health and reflection each have their own small
pool, outside that budget: a health check never waits behind classification work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proto.fercomp.v1 import fercomp_pb2, fercomp_pb2_grpc
from proto.wire import ERROR_CODE_KEY, SERVICE_NAME
from service.admission import Admission, RpcBudget
from service.convert import error_item, model_infos, to_proto
from service.errors import (
    BadRequest,
    RpcLimit,
    StreamLimit,
    error_code,
)
from service.grpc_status import grpc_status_for
from service.interceptors import (
    CallbackThread,
    CallRouting,
    RequestContextInterceptor,
    add_trailing_metadata,
)
from service.logs import request_id_var
from service.pipeline import Framing, StreamMessage
from service.settings import Settings
from service.state import ServiceState
from service.types import RequestMeta

log = logging.getLogger("fercomp.service.grpc")

# Threads of the pools outside the RPC budget. A health Check takes microseconds and the health
# Watch is non-blocking (it holds no thread once set up); a reflection stream holds one thread
# while a client (grpcurl) keeps it open. Refusals take microseconds each.
HEALTH_THREADS = 2
REFLECTION_THREADS = 2
REFUSAL_THREADS = 2
# FerService method -> the transport its refusals are counted under (fercomp_requests_total).
_COUNTED = {
    f"/{SERVICE_NAME}/Classify": "grpc",
    f"/{SERVICE_NAME}/ClassifyStream": "grpc_stream",
}


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """End the call with the status for ``exc``; the machine code goes in trailing metadata
    (``fercomp-error-code``) and prefixes the message."""
    code = error_code(exc)
    if code == "internal":
        log.error("unexpected error", exc_info=exc)
        message = "internal error"
    else:
        message = str(exc)
    add_trailing_metadata(context, (ERROR_CODE_KEY, code))  # keeps the x-request-id
    context.abort(grpc_status_for(exc), f"{code}: {message}")
    raise AssertionError("unreachable")  # context.abort always raises


# ClassifyRequest.payload case -> what the pipeline does with it; unset is an empty bitstream
# (proto3 does not send an empty bytes field), which the parser reports as truncated.
_FRAMING = {
    None: Framing.CONTAINER,
    "bitstream": Framing.CONTAINER,
    "stream_header": Framing.STREAM_HEADER,
    "compact_face": Framing.COMPACT_FACE,
}


def _meta(req: fercomp_pb2.ClassifyRequest, transport: str, rid: str = "") -> RequestMeta:
    return RequestMeta(
        request_id=req.request_id or rid,
        client_id=req.client_id,
        stream_id=req.stream_id,
        label=req.label if req.HasField("label") else None,
        transport=transport,
    )


def stream_message(req: fercomp_pb2.ClassifyRequest) -> StreamMessage:
    framing = _FRAMING[req.WhichOneof("payload")]
    if framing is Framing.STREAM_HEADER:
        data = bytes(req.stream_header.header)
    elif framing is Framing.COMPACT_FACE:
        data = bytes(req.compact_face)
    else:
        data = bytes(req.bitstream)
    return StreamMessage(framing, data, _meta(req, "grpc_stream"))


class FerServicer(fercomp_pb2_grpc.FerServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.streams = Admission(
            state.settings.max_streams, on_change=state.metrics.streams_open.set
        )

    def Classify(
        self, request: fercomp_pb2.ClassifyRequest, context: grpc.ServicerContext
    ) -> fercomp_pb2.ClassifyResponse:
        pipeline = self.state.pipeline
        if request.WhichOneof("payload") not in (None, "bitstream"):
            abort(context, pipeline.refuse("grpc", BadRequest(
                "stream_header and compact_face belong in ClassifyStream; "
                "Classify takes a whole container in bitstream"
            )))  # fmt: skip
        meta = _meta(request, "grpc", request_id_var.get())
        try:
            pred = pipeline.classify(bytes(request.bitstream), meta, context.time_remaining())
        except Exception as e:  # counted by the pipeline
            abort(context, e)
        return to_proto(pred)

    def ClassifyStream(
        self, request_iterator: Iterator[fercomp_pb2.ClassifyRequest], context: grpc.ServicerContext
    ) -> Iterator[fercomp_pb2.ClassifyResponse]:
        try:
            # Held until the stream ends, however it ends (done, cancelled, deadline).
            with self.streams.slot():
                yield from self._stream(request_iterator, context)
        except StreamLimit as e:  # only slot() raises it: refused before reading anything
            abort(context, self.state.pipeline.refuse("grpc_stream", e))

    def _stream(
        self, request_iterator: Iterator[fercomp_pb2.ClassifyRequest], context: grpc.ServicerContext
    ) -> Iterator[fercomp_pb2.ClassifyResponse]:
        results = self.state.pipeline.classify_stream(
            (stream_message(req) for req in request_iterator),
            "grpc_stream",
            base_id=request_id_var.get(),
            time_remaining=context.time_remaining,
        )
        try:
            for r in results:
                if r.prediction is not None:
                    yield to_proto(r.prediction, r.index)
                    continue
                assert r.error is not None
                if error_code(r.error) == "internal":
                    log.error("stream item %d failed", r.index, exc_info=r.error)
                yield error_item(r.index, r.request_id, r.error)
        except Exception as e:  # the stream protocol was broken (pipeline counted it)
            abort(context, e)

    def ListModels(
        self, request: fercomp_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> fercomp_pb2.ListModelsResponse:
        return fercomp_pb2.ListModelsResponse(models=model_infos(self.state.registry.models()))

    def refuse_over_budget(self, method: str, context: grpc.ServicerContext) -> NoReturn:
        """A call past ``grpc_max_concurrent_rpcs``: RESOURCE_EXHAUSTED ``resource_exhausted``,
        counted like the pipeline's own refusals (classify calls only)."""
        s = self.state.settings
        exc: BaseException = RpcLimit(
            f"{s.grpc_max_concurrent_rpcs} calls already running or waiting for one of "
            f"{s.grpc_workers} handler threads (grpc_max_concurrent_rpcs); retry later"
        )
        if method in _COUNTED:
            exc = self.state.pipeline.refuse(_COUNTED[method], exc)
        abort(context, exc)


def build_grpc_server(
    state: ServiceState, health_servicer: health.HealthServicer
) -> tuple[grpc.Server, int]:
    """A configured (not yet started) server and the port it is bound to."""
    s = state.settings
    servicer = FerServicer(state)
    budget = RpcBudget(s.grpc_workers, s.grpc_max_concurrent_rpcs, "fercomp-grpc")
    routing = CallRouting(
        budget=budget,
        reserved={
            health.SERVICE_NAME: ThreadPoolExecutor(HEALTH_THREADS, "fercomp-grpc-health"),
            reflection.SERVICE_NAME: ThreadPoolExecutor(
                REFLECTION_THREADS, "fercomp-grpc-reflection"
            ),
        },
        refusals=ThreadPoolExecutor(REFUSAL_THREADS, "fercomp-grpc-refuse"),
        refuse=servicer.refuse_over_budget,
        callbacks=CallbackThread("fercomp-grpc-health-watch"),
    )
    server = grpc.server(
        budget,
        interceptors=[RequestContextInterceptor(routing)],
        # Not gRPC's maximum_concurrent_rpcs: it counts every call, health checks included, and
        # would refuse a probe of a busy server. The budget above leaves health out.
        maximum_concurrent_rpcs=None,
        options=[
            # Above max_payload_bytes so an oversized bitstream reaches the pipeline and gets
            # the documented INVALID_ARGUMENT payload_too_large; only messages past this hard
            # cap get the transport's own RESOURCE_EXHAUSTED (before any handler runs).
            ("grpc.max_receive_message_length", s.grpc_max_message_bytes),
            ("grpc.so_reuseport", 0),  # a busy port must fail, not be shared silently
        ],
    )
    fercomp_pb2_grpc.add_FerServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    host = f"[{s.host}]" if ":" in s.host and not s.host.startswith("[") else s.host
    address = f"{host}:{s.grpc_port}"
    try:
        if s.tls_cert is not None and s.tls_key is not None:
            port = server.add_secure_port(address, _server_credentials(s))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as e:  # grpc raises RuntimeError("Failed to bind ...")
        raise OSError(f"cannot bind gRPC to {host}:{s.grpc_port}: {e}") from e
    if port == 0:
        raise OSError(f"cannot bind gRPC to {host}:{s.grpc_port}")
    return server, port


def _server_credentials(s: Settings) -> grpc.ServerCredentials:
    """TLS credentials from the PEM files in the settings; mutual TLS when a client CA is set."""
    assert s.tls_cert is not None and s.tls_key is not None
    ca = s.tls_client_ca.read_bytes() if s.tls_client_ca is not None else None
    return grpc.ssl_server_credentials(
        [(s.tls_key.read_bytes(), s.tls_cert.read_bytes())],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def set_health(servicer: health.HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", SERVICE_NAME):
        servicer.set(name, status)
