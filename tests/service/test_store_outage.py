"""PostgreSQL goes away under traffic and comes back (``pg_ctl stop -m fast``: SIGINT to the
postmaster, then a restart on the same port).

While it is down, writes end with StoreUnavailable (HTTP 503 ``store_unavailable``, gRPC
UNAVAILABLE), none hangs, each failure is counted; readiness does not change (every replica
shares the database, so failing readiness would empty the balancer at once). Once it is back
the store recovers by itself, and every write acknowledged before, during or after the outage
is in the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace

import grpc
import httpx
import pytest

from proto.fercomp.v1 import fercomp_pb2 as pb
from proto.fercomp.v1 import fercomp_pb2_grpc
from service.errors import StoreUnavailable
from service.store import PredictionStore
from service.store.postgres import PostgresBackend
from tests.pg_server import PgServer
from tests.service.conftest import SettingsFactory, metric, running
from tests.service.test_engine import wait_for
from tests.service.test_store import pred

RECOVERY_S = 30.0  # a bound for "recovers by itself", not a speed claim


@dataclass
class Traffic:
    """What the client threads saw: acknowledged ids, refusals by kind, anything else."""

    acked: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, value: str) -> None:
        with self.lock:
            getattr(self, kind).append(value)

    def count(self, kind: str) -> int:
        with self.lock:
            return len(getattr(self, kind))

    def run(self, clients: list[Callable[[int], None]]) -> list[threading.Thread]:
        def loop(client: Callable[[int], None]) -> None:
            i = 0
            while not self.stop.is_set():
                client(i)
                i += 1
                self.stop.wait(0.005)

        threads = [threading.Thread(target=loop, args=(c,), daemon=True) for c in clients]
        for t in threads:
            t.start()
        return threads


def outage(pg: PgServer, traffic: Traffic, while_down: Callable[[], None], n: int) -> None:
    """``n`` acknowledged writes before a fast shutdown of ``pg``, ``n // 2`` refused while it
    is down, ``n`` acknowledged again after its restart."""
    wait_for(lambda: traffic.count("acked") >= n, timeout=RECOVERY_S)
    pg.stop()  # SIGINT: PostgreSQL's fast shutdown, as pg_ctl stop -m fast
    try:
        wait_for(lambda: traffic.count("refused") >= n // 2, timeout=RECOVERY_S)
        while_down()
    finally:
        pg.start()
    acked = traffic.count("acked")
    wait_for(lambda: traffic.count("acked") >= acked + n, timeout=RECOVERY_S)


def stored_ids(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM predictions").fetchall()}


def test_store_fails_clearly_while_postgres_is_down_and_recovers(
    pg_server: PgServer, pg_url: str
) -> None:
    errors: list[tuple[str, str]] = []
    store = PredictionStore(
        PostgresBackend(pg_url, open_wait=0.0),
        on_error=lambda op, reason, n: errors.append((op, reason)),
    )
    store.open()
    traffic = Traffic()
    seq = iter(range(10**9))

    def write(i: int) -> None:
        p = replace(pred(0), id=f"w{next(seq)}")
        try:
            store.add(p).result(timeout=20)  # far beyond any commit: never reached
        except StoreUnavailable:
            traffic.note("refused", p.id)
        except FutureTimeout:
            traffic.note("unexpected", f"{p.id}: no answer in 20 s")
        else:
            traffic.note("acked", p.id)

    def while_down() -> None:
        with pytest.raises(StoreUnavailable):
            store.get("w0")
        with pytest.raises(StoreUnavailable):
            store.fleet.desired()

    threads = traffic.run([write] * 4)
    try:
        outage(pg_server, traffic, while_down, n=30)
    finally:
        traffic.stop.set()
        for t in threads:
            t.join(30)
    try:
        assert not traffic.unexpected
        assert set(traffic.acked) <= stored_ids(pg_url)  # nothing acknowledged is lost
        ops = {op for op, _ in errors}
        assert ("write", "connection") in errors and {"read", "fleet"} <= ops
        assert store.get(traffic.acked[-1]) is not None  # reads are back too
        assert store.fleet.desired() is None
    finally:
        store.close()


def test_server_answers_503_while_postgres_is_down_and_recovers(
    pg_server: PgServer, pg_url: str, make_settings: SettingsFactory, payloads_v1: list[bytes]
) -> None:
    with running(make_settings(db_url=pg_url, request_timeout=15.0)) as live:
        traffic = Traffic()
        base = str(live.http.base_url)
        http = httpx.Client(base_url=base, timeout=30.0)
        channel = grpc.insecure_channel(f"127.0.0.1:{live.ports.grpc}")
        stub = fercomp_pb2_grpc.FerServiceStub(channel)

        def rest(i: int) -> None:
            r = http.post("/v1/classify", content=payloads_v1[i % len(payloads_v1)])
            if r.status_code == 200:
                traffic.note("acked", r.json()["prediction_id"])
            elif r.status_code == 503 and r.json()["error"] == "store_unavailable":
                traffic.note("refused", "http")
            else:
                traffic.note("unexpected", f"http {r.status_code} {r.text}")

        def unary(i: int) -> None:
            try:
                r = stub.Classify(pb.ClassifyRequest(bitstream=payloads_v1[i % 16]), timeout=30)
            except grpc.RpcError as e:
                code = dict(e.trailing_metadata() or ()).get("fercomp-error-code")
                if e.code() == grpc.StatusCode.UNAVAILABLE and code == "store_unavailable":
                    traffic.note("refused", "grpc")
                else:
                    traffic.note("unexpected", f"grpc {e.code()} {code}")
                return
            traffic.note("acked", r.prediction_id)

        def while_down() -> None:
            assert live.http.get("/readyz").status_code == 200  # readiness unaffected
            r = live.http.get("/v1/predictions/anything")  # reads fail as clearly
            assert (r.status_code, r.json()["error"]) == (503, "store_unavailable")
            wait_for(lambda: "grpc" in traffic.refused, timeout=RECOVERY_S)
            text = live.metrics()
            assert metric(text, "fercomp_store_errors_total", op="write", reason="connection") > 0
            assert metric(text, "fercomp_requests_total", status="store_unavailable") > 0

        threads = traffic.run([rest, rest, unary])
        try:
            outage(pg_server, traffic, while_down, n=10)  # a server on 2 cores: fewer
        finally:
            traffic.stop.set()
            for t in threads:
                t.join(60)
            http.close()
            channel.close()
        assert not traffic.unexpected, traffic.unexpected[:5]
        assert set(traffic.acked) <= stored_ids(pg_url)  # every acknowledged id, directly
        for pid in (traffic.acked[0], traffic.acked[-1]):  # and through the server
            assert live.http.get(f"/v1/predictions/{pid}").status_code == 200
