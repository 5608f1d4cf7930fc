"""``Server``: gRPC + REST in one process, with ordered startup and graceful shutdown.

Startup: bind both ports (fail fast on a busy port) -> load + smoke-test models -> start the
engine and the store -> start transports -> health SERVING.
Shutdown (``stop``): health NOT_SERVING and readiness 503 -> transports stop accepting and let
in-flight calls finish (up to ``grace``) -> the engine drains its queue -> the store flushes.

    server = Server(Settings(grpc_port=0, http_port=0, db_path=tmp / "p.sqlite3"))
    ports = server.start()          # Ports(grpc=..., http=...)
    ...
    server.stop()
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

import grpc
import uvicorn
from grpc_health.v1 import health

from core.blas import limit_blas_threads
from service import heap
from service.grpc_server import build_grpc_server, set_health
from service.http import create_app
from service.settings import Settings
from service.state import ServiceState

log = logging.getLogger("fercomp.service")


@dataclass(frozen=True)
class Ports:
    grpc: int
    http: int


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose ``proto`` says
    # TCP, and an accepted socket inherits ours. With proto 0 every keep-alive response
    # waited out the client's delayed ACK (Nagle): 44 ms per request on loopback here.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise OSError(f"cannot bind HTTP to {host}:{port}: {e.strerror or e}") from e
    sock.listen(2048)  # connections queue in the backlog until uvicorn accepts them
    return sock


def _warn_plaintext(s: Settings) -> None:
    """Loud on purpose: a log line for the log pipeline and a plain line for a human at a
    terminal. Not refused: TLS often terminates in a proxy or mesh in front (deploy/)."""
    msg = (
        f"serving {s.host} (reachable from the network) WITHOUT TLS: bitstreams, predictions "
        "and the admin bearer token cross the network in plaintext. Set --tls-cert/--tls-key, "
        "or make sure a proxy in front terminates TLS (docs/SECURITY.md)."
    )
    log.warning(msg)
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


class Server:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.state: ServiceState | None = None
        self.ports: Ports | None = None
        self._health = health.HealthServicer(experimental_non_blocking=True)
        self._grpc: grpc.Server | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Ports:
        """Start everything; returns the bound ports (useful with port 0)."""
        s = self.settings
        if s.insecure_exposure:
            _warn_plaintext(s)
        limit_blas_threads()  # core/blas.py: numpy's spinning BLAS pool cost a core
        set_health(self._health, False)
        self.state = state = ServiceState.build(s)
        sock = _bind(s.host, s.http_port)
        try:
            self._grpc, grpc_port = build_grpc_server(state, self._health)
            state.load()
        except BaseException:
            sock.close()
            if self._grpc is not None:
                self._grpc.stop(None)
            state.close(drain=False)
            raise
        self._grpc.start()
        config = uvicorn.Config(
            create_app(state),
            log_config=None,  # our logging setup (service.logs) applies
            access_log=False,  # the app's middleware logs each request with its id
            timeout_graceful_shutdown=max(1, int(s.shutdown_grace)),
            lifespan="off",
            # REST shares the server certificate; its admin calls are guarded by the bearer
            # token, so client certificates (mutual TLS) apply to the gRPC data plane only.
            ssl_certfile=str(s.tls_cert) if s.tls_cert else None,
            ssl_keyfile=str(s.tls_key) if s.tls_key else None,
        )
        self._uvicorn = server = uvicorn.Server(config)
        self._http_thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="fercomp-http", daemon=True
        )
        self._http_thread.start()
        self.ports = Ports(grpc=grpc_port, http=sock.getsockname()[1])
        if s.gc_freeze:  # loaded and warm: what is alive now lives as long as the server
            heap.freeze()
        state.ready = True
        set_health(self._health, True)
        log.info(
            "serving grpc=%s:%d http=%s:%d tls=%s", s.host, self.ports.grpc, s.host,
            self.ports.http, "mutual" if s.tls_client_ca else s.tls,
            extra={"grpc_port": self.ports.grpc, "http_port": self.ports.http},
        )  # fmt: skip
        return self.ports

    def stop(self, grace: float | None = None) -> None:
        """Graceful shutdown; safe to call twice and from any thread."""
        with self._stop_lock:
            if self._stopped.is_set() or self.state is None:
                self._stopped.set()
                return
            grace = self.settings.shutdown_grace if grace is None else grace
            log.info("shutting down (grace %.1fs)", grace)
            self.state.ready = False
            self._health.enter_graceful_shutdown()  # all services NOT_SERVING, for good
            if self.settings.shutdown_delay:
                # Load balancers polling health/readiness get time to route elsewhere
                # before the listeners close.
                time.sleep(self.settings.shutdown_delay)
            # Transports first (they wait on the engine for in-flight calls), then the engine.
            grpc_done = self._grpc.stop(grace) if self._grpc is not None else None
            if self._uvicorn is not None:
                self._uvicorn.should_exit = True
            if grpc_done is not None:
                grpc_done.wait(grace + 1.0)
            if self._http_thread is not None:
                self._http_thread.join(grace + 2.0)
            self.state.close(drain=True)
            if self.settings.gc_freeze:
                heap.thaw()
            self._stopped.set()
            log.info("stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``stop`` has finished; True if it has."""
        return self._stopped.wait(timeout)

    def serve_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT (main thread only), then stop gracefully."""
        stop_requested = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("received %s", signal.Signals(signum).name)
            if stop_requested.is_set():  # second signal: stop waiting for in-flight work
                raise KeyboardInterrupt
            stop_requested.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            if self.ports is None:
                self.start()
            while not stop_requested.wait(0.5):
                pass
            self.stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
