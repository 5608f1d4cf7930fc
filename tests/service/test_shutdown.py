"""Graceful shutdown: NOT_SERVING at once, no new work, in-flight requests finish, store flushed."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from proto.fercomp.v1 import fercomp_pb2 as pb
from service.app import Server
from tests.service.conftest import Live, SettingsFactory
from tests.service.test_engine import block_worker, wait_for


def test_stop_drains_in_flight(
    make_settings: SettingsFactory, payloads_v1: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(max_batch_size=1, shutdown_delay=1.0)
    server = Server(settings)
    server.start()
    live = Live(server)
    entered, release = block_worker(live, monkeypatch)
    health = health_pb2_grpc.HealthStub(live.channel)
    with ThreadPoolExecutor(4) as pool:
        calls = [
            pool.submit(live.stub.Classify, pb.ClassifyRequest(bitstream=p))
            for p in payloads_v1[:3]
        ]
        assert entered.wait(5)
        wait_for(lambda: live.state.engine.depth == 2)
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 10.0})
        stopper.start()
        wait_for(lambda: not live.state.ready)
        status = health.Check(health_pb2.HealthCheckRequest(service="")).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert live.http.get("/readyz").status_code == 503
        # Once the listeners close (after shutdown_delay), new calls are refused.
        wait_for(lambda: live.http_refused(), timeout=5)
        with pytest.raises(grpc.RpcError) as e:
            live.stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[5]), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not any(c.done() for c in calls)  # ... while in-flight ones are still waiting
        release.set()
        results = [c.result(10) for c in calls]
        stopper.join(15)
    assert not stopper.is_alive() and server.wait(0)
    assert all(r.prediction_id for r in results)
    live.close()
    with sqlite3.connect(settings.db_path) as db:
        stored = {row[0] for row in db.execute("SELECT id FROM predictions")}
    assert {r.prediction_id for r in results} <= stored
    server.stop()  # idempotent
