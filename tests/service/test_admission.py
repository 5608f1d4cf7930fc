"""Admission control on gRPC: streams past ``max_streams`` are refused with RESOURCE_EXHAUSTED
while unary calls, ListModels and health checks keep answering; each stream keeps at most
``stream_max_in_flight`` items submitted; oversized messages get clear status codes. And the
load signal behind them: ``fercomp_requests_in_flight`` counts admitted, unanswered requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from proto.fercomp.v1 import fercomp_pb2 as pb
from service.admission import InFlight, RpcBudget
from tests.service.conftest import SettingsFactory, metric, running
from tests.service.test_engine import block_worker, wait_for

SHORT = 10.0  # deadline for calls that must not wait behind open streams


def test_streams_past_the_cap_are_refused_while_short_calls_answer(
    make_settings: SettingsFactory, payloads_v1: list[bytes]
) -> None:
    settings = make_settings(max_streams=2, grpc_workers=4)
    with running(settings) as live:
        release = threading.Event()

        def slow_client() -> Iterator[pb.ClassifyRequest]:
            yield pb.ClassifyRequest(bitstream=payloads_v1[0])
            release.wait(120)  # then sits on its open stream, as a slow camera would

        held = [live.stub.ClassifyStream(slow_client(), timeout=180) for _ in range(2)]
        try:
            assert all(next(call).prediction_id for call in held)  # both admitted
            assert metric(live.metrics(), "fercomp_grpc_streams_open") == 2
            # More stream attempts than there are handler threads, all at once.
            excess = [
                live.stub.ClassifyStream(iter([pb.ClassifyRequest(bitstream=p)]), timeout=SHORT)
                for p in payloads_v1[:8]
            ]
            for call in excess:
                with pytest.raises(grpc.RpcError) as e:
                    list(call)
                assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value.details()
                assert dict(e.value.trailing_metadata())["fercomp-error-code"] == (
                    "resource_exhausted"
                )
                assert "max_streams" in e.value.details()
            # Short calls keep answering with every stream slot taken.
            r = live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[1]), timeout=SHORT)
            assert r.prediction_id
            assert live.stub.ListModels(pb.ListModelsRequest(), timeout=SHORT).models
            health = health_pb2_grpc.HealthStub(live.channel)
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=SHORT)
            assert status.status == health_pb2.HealthCheckResponse.SERVING
            refused = metric(
                live.metrics(), "fercomp_requests_total",
                transport="grpc_stream", status="resource_exhausted",
            )  # fmt: skip
            assert refused == len(excess)
        finally:
            release.set()
        for call in held:
            assert list(call) == []  # the slow clients end cleanly
        wait_for(lambda: metric(live.metrics(), "fercomp_grpc_streams_open") == 0)
        # Slots come back: a new stream is admitted again.
        again = live.stub.ClassifyStream(iter([pb.ClassifyRequest(bitstream=payloads_v1[2])]))
        assert [r.index for r in again] == [0]


def test_stream_in_flight_items_are_bounded(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    window = 3
    settings = make_settings(stream_max_in_flight=window, max_batch_size=1)
    with running(settings) as live:
        entered, release = block_worker(live, monkeypatch)
        reqs = [pb.ClassifyRequest(bitstream=p) for p in payloads_v1]  # 16, all sent at once
        call = live.stub.ClassifyStream(iter(reqs), timeout=60)
        try:
            assert entered.wait(10)
            # One item in the (blocked) model, one the responder waits on... in all:
            # window + 2 submitted, the reader blocked on the next; the rest stay unread.
            wait_for(lambda: live.state.engine.depth == window + 1)
            threading.Event().wait(0.5)  # time the reader would need to submit more
            assert live.state.engine.depth == window + 1
        finally:
            release.set()
        out = list(call)
        assert [r.index for r in out] == list(range(len(reqs)))
        assert not any(r.HasField("error") for r in out)


def test_oversized_messages(make_settings: SettingsFactory, payloads_v1: list[bytes]) -> None:
    settings = make_settings(max_payload_bytes=2048, grpc_max_message_bytes=8192)
    with running(settings) as live:
        # Over max_payload_bytes but within the transport's cap: the documented error.
        with pytest.raises(grpc.RpcError) as e:
            live.stub.Classify(pb.ClassifyRequest(bitstream=b"F" * 4096), timeout=SHORT)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(e.value.trailing_metadata())["fercomp-error-code"] == "payload_too_large"
        # In a stream it is that item's error; the stream goes on.
        items = [b"F" * 4096, payloads_v1[0]]
        out = list(live.stub.ClassifyStream(iter(pb.ClassifyRequest(bitstream=b) for b in items)))
        assert [r.error.code for r in out] == ["payload_too_large", ""]
        # Past grpc_max_message_bytes the transport refuses before any handler runs: it
        # answers RESOURCE_EXHAUSTED itself, without our error-code metadata.
        with pytest.raises(grpc.RpcError) as e:
            live.stub.Classify(pb.ClassifyRequest(bitstream=b"F" * 10_000), timeout=SHORT)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "fercomp-error-code" not in dict(e.value.trailing_metadata() or ())
        # Over-long ids are refused like on REST.
        with pytest.raises(grpc.RpcError) as e:
            live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[0], client_id="c" * 129))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[0])).prediction_id


def test_a_unary_flood_past_the_rpc_budget_is_refused_at_once(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls past ``grpc_max_concurrent_rpcs`` (running + waiting for a thread) get
    RESOURCE_EXHAUSTED ``resource_exhausted`` at once instead of queueing behind a stuck model,
    counted like every refusal (health checks are outside this budget:
    test_health_isolation.py)."""
    settings = make_settings(max_streams=1, grpc_workers=2, grpc_max_concurrent_rpcs=3)
    with running(settings) as live:
        entered, release = block_worker(live, monkeypatch)
        try:
            held = [
                live.stub.Classify.future(pb.ClassifyRequest(bitstream=p), timeout=60)
                for p in payloads_v1[:3]
            ]
            assert entered.wait(10)
            refused = []
            for p in payloads_v1[3:9]:
                with pytest.raises(grpc.RpcError) as e:
                    live.stub.Classify(pb.ClassifyRequest(bitstream=p), timeout=SHORT)
                refused.append(e.value.code())
                assert dict(e.value.trailing_metadata())["fercomp-error-code"] == (
                    "resource_exhausted"
                )
            assert refused == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 6
            counted = metric(
                live.metrics(), "fercomp_requests_total",
                transport="grpc", status="resource_exhausted",
            )  # fmt: skip
            assert counted == 6
        finally:
            release.set()
        assert all(f.result().prediction_id for f in held)  # what was admitted completes
        # and the budget is free again once the flood is over
        assert live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[9]), timeout=30)


def test_the_rpc_budget_counts_calls_until_they_are_done() -> None:
    """Running + waiting for a thread; a call that never ran (cancelled while it waited) gives
    its slot back too."""
    budget = RpcBudget(workers=1, limit=2)
    gate = threading.Event()
    try:
        running_call = budget.submit(gate.wait, 10)
        waiting_call = budget.submit(gate.wait, 10)  # the only thread is taken
        assert budget.in_flight == 2 and budget.full()
        assert waiting_call.cancel()
        assert budget.in_flight == 1 and not budget.full()
        gate.set()
        assert running_call.result(10)
        wait_for(lambda: budget.in_flight == 0)
    finally:
        gate.set()
        budget.shutdown()


def test_in_flight_release_counts_out_once() -> None:
    seen: list[int] = []
    in_flight = InFlight(on_change=seen.append)
    first, second = in_flight.enter(), in_flight.enter()
    first()
    first()  # answered and its work done: both release it, it counts once
    assert in_flight.count == 1
    second()
    assert in_flight.count == 0 and seen == [1, 2, 1, 0]


def test_requests_in_flight_rises_while_held_and_returns_to_zero(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every transport counts while the model is held: unary gRPC, REST, and the faces of a
    stream, also of one the client abandons before its answers (counted out when the engine
    has finished them)."""
    settings = make_settings(max_batch_size=1)
    with running(settings) as live, ThreadPoolExecutor(2) as rest:

        def in_flight() -> float:
            return metric(live.metrics(), "fercomp_requests_in_flight")

        assert in_flight() == 0
        entered, release = block_worker(live, monkeypatch)
        stream_open = threading.Event()

        def abandoned_stream() -> Iterator[pb.ClassifyRequest]:
            yield from (pb.ClassifyRequest(bitstream=p) for p in payloads_v1[5:8])
            stream_open.wait(30)

        try:
            unary = [
                live.stub.Classify.future(pb.ClassifyRequest(bitstream=p), timeout=60)
                for p in payloads_v1[:3]
            ]
            posts = [
                rest.submit(live.http.post, "/v1/classify", content=p) for p in payloads_v1[3:5]
            ]
            stream = live.stub.ClassifyStream(abandoned_stream(), timeout=60)
            assert entered.wait(10)
            wait_for(lambda: in_flight() == 8)  # 3 unary + 2 REST + 3 stream faces
            assert live.state.pipeline.in_flight.count == 8
            stream.cancel()  # nobody waits for its three faces any more
        finally:
            release.set()
            stream_open.set()
        assert all(f.result().prediction_id for f in unary)
        assert all(f.result().status_code == 200 for f in posts)
        wait_for(lambda: in_flight() == 0)
        assert live.state.pipeline.in_flight.count == 0
