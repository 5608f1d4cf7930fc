"""Dynamic batching, queue limits and deadlines, through the real gRPC server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from proto.fercomp.v1 import fercomp_pb2 as pb
from tests.service.conftest import Live, SettingsFactory, metric, running


def block_worker(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event]:
    """Make the engine's predict wait for ``release``; ``entered`` is set when it does."""
    entered, release = threading.Event(), threading.Event()
    real: Callable[..., Any] = live.state.api.predict

    def blocked(items: list[Any]) -> Any:
        entered.set()
        assert release.wait(10), "test never released the worker"
        return real(items)

    monkeypatch.setattr(live.state.api, "predict", blocked)
    return entered, release


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    ev = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        ev.wait(0.01)
    raise AssertionError("condition not reached")


def test_concurrent_requests_are_batched(make_settings: SettingsFactory, payloads_v1) -> None:
    settings = make_settings(max_queue_delay_ms=50, max_batch_size=16, grpc_workers=20)
    with running(settings) as live, ThreadPoolExecutor(16) as pool:
        req = [pb.ClassifyRequest(bitstream=p) for p in payloads_v1]
        results = list(pool.map(live.stub.Classify, req))
        assert len(results) == 16 and all(r.prediction_id for r in results)
        text = live.metrics()
        batches = metric(text, "fercomp_batch_size_count")
        items = metric(text, "fercomp_batch_size_sum")
        assert items == 16  # the warm-up in setup() bypasses the engine
    assert batches < items, f"no batching: {batches} batches for {items} items"
    assert metric(text, "fercomp_batch_size_bucket", le="1.0") < batches  # some batch was > 1


def test_queue_full_is_resource_exhausted(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(max_queue_size=1, max_batch_size=1, max_queue_delay_ms=0)
    with running(settings) as live, ThreadPoolExecutor(2) as pool:
        entered, release = block_worker(live, monkeypatch)
        first = pool.submit(live.stub.Classify, pb.ClassifyRequest(bitstream=payloads_v1[0]))
        assert entered.wait(5)
        second = pool.submit(live.stub.Classify, pb.ClassifyRequest(bitstream=payloads_v1[1]))
        wait_for(lambda: live.state.engine.depth == 1)
        with pytest.raises(grpc.RpcError) as e:
            live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[2]))
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        r = live.http.post("/v1/classify", content=payloads_v1[3])
        assert r.status_code == 429 and r.json()["error"] == "resource_exhausted"
        release.set()
        assert first.result(5).prediction_id and second.result(5).prediction_id
        text = live.metrics()
        assert metric(text, "fercomp_requests_total", status="resource_exhausted") == 2


def test_deadline_exceeded_while_queued(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    with running(make_settings(request_timeout=0.3, max_batch_size=1)) as live:
        entered, release = block_worker(live, monkeypatch)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(live.stub.Classify, pb.ClassifyRequest(bitstream=payloads_v1[0]))
            assert entered.wait(5)
            with pytest.raises(grpc.RpcError) as e:
                live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[1]))
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "deadline_exceeded" in e.value.details()
            release.set()
            with pytest.raises(grpc.RpcError):  # the blocked one ran out of time too
                first.result(5)
        # The server is fine afterwards.
        assert live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[2])).prediction_id


def test_rest_deadline_exceeded_while_queued(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """REST awaits the engine on the event loop: the request timeout still ends it (504), the
    late face is never run, and the loop goes on serving."""
    with running(make_settings(request_timeout=0.3, max_batch_size=1)) as live:
        entered, release = block_worker(live, monkeypatch)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(live.http.post, "/v1/classify", content=payloads_v1[0])
            assert entered.wait(5)
            start = time.monotonic()
            r = live.http.post("/v1/classify", content=payloads_v1[1])
            elapsed = time.monotonic() - start
            assert (r.status_code, r.json()["error"]) == (504, "deadline_exceeded")
            assert elapsed < 2.0, f"timeout 0.3 s, request took {elapsed:.2f} s"
            assert live.http.get("/healthz").status_code == 200  # answered while one is blocked
            release.set()
            assert first.result(5).status_code == 504  # it ran out of time in the engine too
        assert live.http.post("/v1/classify", content=payloads_v1[2]).status_code == 200
        expired = metric(live.metrics(), "fercomp_requests_total", status="deadline_exceeded")
        assert expired == 2


def test_client_deadline_is_respected(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's own timeout (10 s) is far longer than the client's deadline (0.3 s): the
    # call must end with DEADLINE_EXCEEDED at the client's deadline, and the server must count
    # it as expired rather than run it once the worker frees up.
    with running(make_settings(request_timeout=10.0, max_batch_size=1)) as live:
        entered, release = block_worker(live, monkeypatch)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(live.stub.Classify, pb.ClassifyRequest(bitstream=payloads_v1[0]))
            assert entered.wait(5)
            start = time.monotonic()
            with pytest.raises(grpc.RpcError) as e:
                live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[1]), timeout=0.3)
            elapsed = time.monotonic() - start
            release.set()
            assert first.result(5).prediction_id  # within the server's 10 s
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert elapsed < 2.0, f"deadline 0.3 s, call took {elapsed:.2f} s"
        wait_for(
            lambda: (
                metric(live.metrics(), "fercomp_requests_total", status="deadline_exceeded") == 1
            )
        )


class _EchoAPI:
    """The smallest ModelAPI: an item is its request, the output its double."""

    def setup(self) -> None: ...
    def decode_request(self, request: int) -> int:
        return request

    def predict(self, items: list[int]) -> list[int | BaseException]:
        return [2 * i for i in items]

    def encode_response(self, output: int, item: int, timing: Any) -> int:
        return output


def test_engine_waits_for_its_last_batch_and_the_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker passes ``expected`` = its previous batch's size + what is queued when it
    starts collecting (service.batching): a closed loop of callers comes back as many as were
    answered, and those already waiting are part of the same loop."""
    import service.engine as engine_module
    from service.engine import InferenceEngine

    seen: list[int | None] = []
    real = engine_module.collect_batch

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("expected"))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module, "collect_batch", spy)
    engine = InferenceEngine(_EchoAPI(), max_batch_size=8, max_queue_delay=0.2)
    gate = threading.Lock()
    gate.acquire()  # hold the worker inside its first batch until all three are queued
    real_predict = engine.api.predict

    entered = threading.Event()

    def held(items: list[int]) -> list[int | BaseException]:
        entered.set()
        with gate:
            return real_predict(items)

    engine.api.predict = held  # type: ignore[method-assign]
    engine.start()
    try:
        first = engine.submit(0)
        assert entered.wait(5)  # the first batch ([0], after the delay) is at the gate
        rest = [engine.submit(i) for i in (1, 2, 3)]
        gate.release()
        assert [f.result(5) for f in [first, *rest]] == [0, 2, 4, 6]
        wait_for(lambda: len(seen) >= 3)
    finally:
        engine.stop()
    assert seen[0] == 8  # no batch yet: wait as a fixed delay would (capped at max size)
    assert seen[1] == 1 + 3  # [0] was answered; 1, 2, 3 were queued meanwhile
    assert seen[2] == 3 + 0


def test_a_batch_is_resolved_inside_the_results_scope() -> None:
    """The engine resolves every future of a batch inside one ``results_scope`` (the server's
    store groups the writes their callbacks make into one commit)."""
    from service.engine import InferenceEngine

    events: list[str] = []

    @contextlib.contextmanager
    def scope() -> Iterator[None]:
        events.append("open")
        yield
        events.append("close")

    engine = InferenceEngine(_EchoAPI(), max_batch_size=4, max_queue_delay=5.0, results_scope=scope)
    gate = threading.Lock()
    gate.acquire()  # the batch waits at predict until every callback is in place
    real_predict = engine.api.predict

    def held(items: list[int]) -> list[int | BaseException]:
        with gate:
            return real_predict(items)

    engine.api.predict = held  # type: ignore[method-assign]
    engine.start()
    try:
        futures = [engine.submit(i) for i in range(4)]  # one batch: it waits for four
        for f in futures:
            f.add_done_callback(lambda f: events.append(f"done {f.result()}"))
        gate.release()
        assert [f.result(5) for f in futures] == [0, 2, 4, 6]
    finally:
        engine.stop()
    assert events == ["open", "done 0", "done 2", "done 4", "done 6", "close"]
