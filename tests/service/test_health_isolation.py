"""Health checks answer however full the server is: they are outside the RPC budget.

A real server (in-process, tiny test models) with its model blocked, so that every classify
call it admits hangs and its budget stays full for as long as the test needs; meanwhile
client threads keep sending more. Health checks on a connection of their own must answer
within their deadline: gRPC ``Check`` and ``Watch`` and reflection, and REST ``/readyz`` and
``/healthz``.

Deadlines are 2 s although an idle check answers in about a millisecond: the only thing a check
may wait for is the interpreter lock, shared with the flood threads of this very process on a
machine that may be running other suites. All checks must succeed: a load balancer that sees
one failed probe in a row of them may already pull the server out.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from proto.fercomp.v1 import fercomp_pb2 as pb
from proto.wire import SERVICE_NAME
from tests.service.conftest import SettingsFactory, metric, running
from tests.service.test_engine import block_worker, wait_for

PROBE_DEADLINE = 2.0
PROBES = 20
SERVING = health_pb2.HealthCheckResponse.SERVING


@contextmanager
def flood(
    n: int, call: Callable[[int], str], unblock: Callable[[], None]
) -> Iterator[Counter[str]]:
    """``n`` threads calling ``call(k)`` back to back for the ``with`` body; outcomes counted.
    On the way out, ``unblock()`` (what the calls hang on), then the threads are joined."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def worker(k: int) -> None:
        while not stop.is_set():
            outcome = call(k)
            with lock:
                outcomes[outcome] += 1
            # A refusal comes back in about a millisecond; a short pause keeps these threads
            # from monopolising the interpreter lock the server's threads (same process) need.
            stop.wait(0.002)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n)]
    for t in threads:
        t.start()
    try:
        yield outcomes
    finally:
        stop.set()
        unblock()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads), "a flood thread did not end"


def _grpc_probes(target: str) -> None:
    """Health Check x PROBES, a Watch and a reflection listing, on a channel of their own."""
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME) * (PROBES // 2):
            r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=PROBE_DEADLINE)
            assert r.status == SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=PROBE_DEADLINE)
        assert next(watch).status == SERVING
        watch.cancel()
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = refl.ServerReflectionInfo(iter([ask]), timeout=PROBE_DEADLINE)
        names = {s.name for s in answer.list_services_response.service}
        assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_grpc_health_answers_while_a_unary_flood_fills_the_budget(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(max_streams=1, grpc_workers=4, grpc_max_concurrent_rpcs=6)
    with running(settings) as live:
        entered, release = block_worker(live, monkeypatch)
        refusals: list[grpc.RpcError] = []

        def classify(k: int) -> str:
            req = pb.ClassifyRequest(bitstream=payloads_v1[k % len(payloads_v1)])
            try:
                live.stub.Classify(req, timeout=30)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    return e.code().name
                refusals.append(e)
                return "refused"
            return "ok"

        with flood(16, classify, release.set) as outcomes:
            # 6 calls admitted (4 on a thread, 2 waiting for one) and hanging on the model,
            # the other 10 threads refused over and over.
            assert entered.wait(10)
            wait_for(lambda: outcomes["refused"] >= 50, timeout=10)
            _grpc_probes(f"127.0.0.1:{live.ports.grpc}")
            # Every FerService call is in the budget: a stream and ListModels are refused too.
            stream = live.stub.ClassifyStream(iter([pb.ClassifyRequest()]), timeout=PROBE_DEADLINE)
            with pytest.raises(grpc.RpcError) as e:
                list(stream)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert dict(e.value.trailing_metadata())["fercomp-error-code"] == "resource_exhausted"
            with pytest.raises(grpc.RpcError) as e:
                live.stub.ListModels(pb.ListModelsRequest(), timeout=PROBE_DEADLINE)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert outcomes["ok"] == 0  # the budget was full all along
        assert set(outcomes) <= {"ok", "refused"}, outcomes
        assert outcomes["ok"] >= 6  # what was admitted completes
        # Refused by the budget, with the service's error code, and counted.
        e = refusals[0]
        assert dict(e.trailing_metadata())["fercomp-error-code"] == "resource_exhausted"
        assert "grpc_max_concurrent_rpcs" in (e.details() or "")
        text = live.metrics()
        counted = metric(
            text, "fercomp_requests_total", transport="grpc", status="resource_exhausted"
        )
        assert counted == outcomes["refused"]
        stream_refusals = metric(
            text, "fercomp_requests_total", transport="grpc_stream", status="resource_exhausted"
        )
        assert stream_refusals == 1


def test_health_watchers_hold_no_handler_thread(
    make_settings: SettingsFactory, payloads_v1: list[bytes]
) -> None:
    """Watch is non-blocking (``HealthServicer``): more watchers than there are threads in any
    pool, and every call still answers. At shutdown the watchers still open see NOT_SERVING,
    and watchers leaving at that moment do not hang it (interceptors.CallbackThread)."""
    settings = make_settings(max_streams=1, grpc_workers=2, grpc_max_concurrent_rpcs=2)
    with running(settings) as live:
        health = health_pb2_grpc.HealthStub(live.channel)
        watches = [health.Watch(health_pb2.HealthCheckRequest(), timeout=60) for _ in range(8)]
        try:
            assert all(next(w).status == SERVING for w in watches)
            r = health.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_DEADLINE)
            assert r.status == SERVING
            assert live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[0]), timeout=10)
            assert live.stub.ListModels(pb.ListModelsRequest(), timeout=10).models
            for w in watches[:4]:
                w.cancel()
            live.server.stop(grace=1.0)  # returns (a deadlock would hang here)
            for w in watches[4:]:
                assert next(w).status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            for w in watches:
                w.cancel()


def test_rest_health_answers_while_classify_requests_wait(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """48 classify requests waiting on a blocked engine hold no thread of the app (they are
    awaited on the event loop): health and the sync routes (/metrics) still answer."""
    with running(make_settings()) as live:
        entered, release = block_worker(live, monkeypatch)
        waiting = [0]  # classify requests waiting for their prediction
        real: Callable[..., Any] = live.state.pipeline.classify_async

        async def counted(*args: Any, **kwargs: Any) -> Any:
            waiting[0] += 1  # the event loop's thread only: no lock needed
            try:
                return await real(*args, **kwargs)
            finally:
                waiting[0] -= 1

        monkeypatch.setattr(live.state.pipeline, "classify_async", counted)
        base = f"http://127.0.0.1:{live.ports.http}"
        clients = [httpx.Client(base_url=base, timeout=30) for _ in range(48)]
        octets = {"content-type": "application/octet-stream"}

        def classify(k: int) -> str:
            body = payloads_v1[k % len(payloads_v1)]
            try:
                return str(
                    clients[k].post("/v1/classify", content=body, headers=octets).status_code
                )
            except httpx.HTTPError as e:
                return type(e).__name__

        try:
            # 48 requests at a time: more than anyio's 40 worker threads.
            with flood(48, classify, release.set) as outcomes:
                assert entered.wait(10)
                wait_for(lambda: waiting[0] >= 48, timeout=10)
                with httpx.Client(base_url=base, timeout=PROBE_DEADLINE) as probe:
                    for _ in range(PROBES // 2):
                        ready = probe.get("/readyz")
                        assert ready.status_code == 200 and ready.json()["status"] == "ready"
                        assert probe.get("/healthz").status_code == 200
                    # Sync routes keep their threads too: classify takes none.
                    assert probe.get("/metrics").status_code == 200
                assert outcomes == Counter()  # nothing answered: the engine is blocked
        finally:
            for c in clients:
                c.close()
        assert set(outcomes) == {"200"}, outcomes
