"""Durability: every prediction id the server acknowledged is still there after a SIGKILL.

The real server runs as a child process; three clients (gRPC unary, a gRPC stream, REST) send
one request at a time, the case where a write-behind store lost the last acknowledged id. The
process is SIGKILLed while they are mid-flight, restarted on the same store, and every id a
client received is looked up through the restarted server's REST API.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from proto.fercomp.v1 import fercomp_pb2 as pb
from proto.fercomp.v1 import fercomp_pb2_grpc
from tests.service.serve_process import ServeProcess

ACKED_BEFORE_KILL = 150  # acknowledgements (all clients together) before the SIGKILL


def _send_until_dead(
    server: ServeProcess, payloads: list[bytes], acked: list[str], enough: threading.Event
) -> list[threading.Thread]:
    lock = threading.Lock()

    def ack(pid: str) -> None:
        with lock:
            acked.append(pid)
            if len(acked) >= ACKED_BEFORE_KILL:
                enough.set()

    def unary() -> None:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = fercomp_pb2_grpc.FerServiceStub(channel)
            for i in range(100_000):
                try:
                    r = stub.Classify(pb.ClassifyRequest(bitstream=payloads[i % 16]), timeout=30)
                except grpc.RpcError:
                    return  # the server is gone
                ack(r.prediction_id)

    def stream() -> None:
        def one_at_a_time() -> Iterator[pb.ClassifyRequest]:
            for i in range(100_000):
                yield pb.ClassifyRequest(bitstream=payloads[i % 16])
                sent.wait(30)  # the next item only once this one is answered
                sent.clear()

        sent = threading.Event()
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = fercomp_pb2_grpc.FerServiceStub(channel)
            try:
                for r in stub.ClassifyStream(one_at_a_time(), timeout=120):
                    assert not r.HasField("error"), r.error
                    ack(r.prediction_id)
                    sent.set()
            except grpc.RpcError:
                return

    def rest() -> None:
        with httpx.Client(base_url=server.http_base, timeout=30) as http:
            for i in range(100_000):
                try:
                    r = http.post("/v1/classify", content=payloads[i % 16])
                except httpx.TransportError:
                    return
                ack(r.json()["prediction_id"])

    threads = [threading.Thread(target=f, daemon=True) for f in (unary, stream, rest)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.timeout(900)  # two process starts: importing torch is slow on a loaded machine
def test_acknowledged_predictions_survive_sigkill(
    model_repo: Path, tmp_path: Path, payloads_v1: list[bytes]
) -> None:
    db = tmp_path / "p.sqlite3"
    first = ServeProcess(model_repo, db)
    acked: list[str] = []
    enough = threading.Event()
    try:
        threads = _send_until_dead(first, payloads_v1, acked, enough)
        assert enough.wait(240), f"only {len(acked)} acknowledged"
        first.proc.send_signal(signal.SIGKILL)  # clients are mid-request right now
        for t in threads:
            t.join(60)
        assert first.proc.wait(30) == -signal.SIGKILL
    finally:
        first.kill()
    ids = list(acked)  # the clients have stopped: nothing is appended any more
    assert len(ids) >= ACKED_BEFORE_KILL and len(set(ids)) == len(ids)

    second = ServeProcess(model_repo, db)
    try:
        with httpx.Client(base_url=second.http_base, timeout=30) as http:
            missing = [pid for pid in ids if http.get(f"/v1/predictions/{pid}").status_code != 200]
    finally:
        second.kill()
    print(f"{len(ids)} ids acknowledged before SIGKILL, {len(missing)} missing after restart")
    assert missing == [], f"{len(missing)} of {len(ids)} acknowledged ids lost: {missing[:5]}"
