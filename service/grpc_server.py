"""gRPC transport: translates protobuf <-> ``Pipeline`` calls and errors <-> status codes.

Also registers the standard ``grpc.health.v1`` service (NOT_SERVING until models are loaded
and again during shutdown) and server reflection (so grpcurl works without the .proto).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proto.fercomp.v1 import fercomp_pb2, fercomp_pb2_grpc
from service.admission import Admission
from service.convert import error_item, model_infos, to_proto
from service.errors import StreamLimit, error_code
from service.grpc_status import grpc_status_for
from service.interceptors import RequestContextInterceptor
from service.logs import request_id_var
from service.pipeline import Pending
from service.settings import Settings
from service.state import ServiceState
from service.types import RequestMeta

log = logging.getLogger("fercomp.service.grpc")
SERVICE_NAME = fercomp_pb2.DESCRIPTOR.services_by_name["FerService"].full_name
ERROR_CODE_KEY = "fercomp-error-code"


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """End the call with the status for ``exc``; the machine code goes in trailing metadata
    (``fercomp-error-code``) and prefixes the message."""
    code = error_code(exc)
    if code == "internal":
        log.error("unexpected error", exc_info=exc)
        message = "internal error"
    else:
        message = str(exc)
    context.set_trailing_metadata(((ERROR_CODE_KEY, code),))
    context.abort(grpc_status_for(exc), f"{code}: {message}")
    raise AssertionError("unreachable")  # context.abort always raises


class FerServicer(fercomp_pb2_grpc.FerServiceServicer):
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.window = state.settings.stream_max_in_flight  # submitted, unanswered, per stream
        self.streams = Admission(
            state.settings.max_streams, on_change=state.metrics.streams_open.set
        )

    def _meta(self, req: fercomp_pb2.ClassifyRequest, transport: str, rid: str) -> RequestMeta:
        return RequestMeta(
            request_id=req.request_id or rid,
            client_id=req.client_id,
            stream_id=req.stream_id,
            label=req.label if req.HasField("label") else None,
            transport=transport,
        )

    def Classify(
        self, request: fercomp_pb2.ClassifyRequest, context: grpc.ServicerContext
    ) -> fercomp_pb2.ClassifyResponse:
        meta = self._meta(request, "grpc", request_id_var.get())
        pipeline = self.state.pipeline
        try:
            pred = pipeline.classify(bytes(request.bitstream), meta, context.time_remaining())
        except Exception as e:
            self.state.metrics.count_request("grpc", error_code(e))
            abort(context, e)
        self.state.metrics.count_request("grpc", "ok")
        return to_proto(pred)

    def ClassifyStream(
        self, request_iterator: Iterator[fercomp_pb2.ClassifyRequest], context: grpc.ServicerContext
    ) -> Iterator[fercomp_pb2.ClassifyResponse]:
        try:
            # Held until the stream ends, however it ends (done, cancelled, deadline).
            with self.streams.slot():
                yield from self._stream(request_iterator, context)
        except StreamLimit as e:  # only slot() raises it: refused before reading anything
            self.state.metrics.count_request("grpc_stream", e.code)
            abort(context, e)

    def _stream(
        self, request_iterator: Iterator[fercomp_pb2.ClassifyRequest], context: grpc.ServicerContext
    ) -> Iterator[fercomp_pb2.ClassifyResponse]:
        # A reader thread submits items as they arrive so they batch with each other (and with
        # other clients' requests); this generator answers them strictly in order.
        window: queue.Queue[Any] = queue.Queue(maxsize=self.window)
        stop = threading.Event()
        base = request_id_var.get() or self.state.pipeline.new_request_id()
        reader = threading.Thread(
            target=self._read_stream, args=(request_iterator, context, window, stop, base),
            name="fercomp-stream-reader", daemon=True,
        )  # fmt: skip
        reader.start()
        metrics = self.state.metrics
        try:
            while (entry := window.get()) is not None:
                index, rid, pending = entry
                try:
                    if isinstance(pending, BaseException):
                        raise pending
                    response = to_proto(self.state.pipeline.wait(pending), index)
                    metrics.count_request("grpc_stream", "ok")
                except Exception as e:
                    metrics.count_request("grpc_stream", error_code(e))
                    if error_code(e) == "internal":
                        log.error("stream item %d failed", index, exc_info=e)
                    response = error_item(index, rid, e)
                yield response
        finally:
            stop.set()

    def _read_stream(
        self,
        requests: Iterator[fercomp_pb2.ClassifyRequest],
        context: grpc.ServicerContext,
        window: queue.Queue[Any],
        stop: threading.Event,
        base: str,
    ) -> None:
        def put(entry: Any) -> bool:
            while not stop.is_set():  # bounded window = backpressure on the client
                try:
                    window.put(entry, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for index, req in enumerate(requests):
                meta = self._meta(req, "grpc_stream", f"{base}-{index}")
                pending: Pending | BaseException
                try:
                    pending = self.state.pipeline.submit(
                        bytes(req.bitstream), meta, context.time_remaining()
                    )
                except Exception as e:
                    pending = e
                if not put((index, meta.request_id, pending)):
                    return
        except Exception as e:  # client went away or sent garbage: end the stream
            log.info("stream reader ended: %s", type(e).__name__)
        finally:
            put(None)

    def ListModels(
        self, request: fercomp_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> fercomp_pb2.ListModelsResponse:
        return fercomp_pb2.ListModelsResponse(models=model_infos(self.state.registry.models()))


def build_grpc_server(
    state: ServiceState, health_servicer: health.HealthServicer
) -> tuple[grpc.Server, int]:
    """A configured (not yet started) server and the port it is bound to."""
    s = state.settings
    server = grpc.server(
        ThreadPoolExecutor(max_workers=s.grpc_workers, thread_name_prefix="fercomp-grpc"),
        interceptors=[RequestContextInterceptor()],
        maximum_concurrent_rpcs=s.grpc_max_concurrent_rpcs,
        options=[
            # Above max_payload_bytes so an oversized bitstream reaches the pipeline and gets
            # the documented INVALID_ARGUMENT payload_too_large; only messages past this hard
            # cap get the transport's own RESOURCE_EXHAUSTED (before any handler runs).
            ("grpc.max_receive_message_length", s.grpc_max_message_bytes),
            ("grpc.so_reuseport", 0),  # a busy port must fail, not be shared silently
        ],
    )
    fercomp_pb2_grpc.add_FerServiceServicer_to_server(FerServicer(state), server)  # type: ignore[no-untyped-call]
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
