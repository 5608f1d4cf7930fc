"""A throwaway PostgreSQL server for tests, from Debian's binaries (``postgresql-15``).

``initdb`` makes a cluster in a fresh directory under /tmp (owned by the ``postgres`` user
when the tests run as root: PostgreSQL refuses to run as root, and that user may not be able
to read the checkout); ``postgres`` runs as this process's child, listening on a free
127.0.0.1 port (trust authentication) with fsync on, as production would. It dies with the
test process: the fixture's finalizer and an ``atexit`` hook stop it, and its parent-death
signal (SIGINT: PostgreSQL's fast shutdown) ends it even when the tests are SIGKILLed.

Each test gets its own schema (``PgServer.fresh_url``), so tests share one server (one start,
well under a second) without seeing each other's tables.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("FERCOMP_PG_BIN", "/usr/lib/postgresql/15/bin"))
MISSING = (
    f"PostgreSQL 15 binaries not found at {PG_BIN}; apt-get install postgresql-15 "
    "(or set FERCOMP_PG_BIN)"
)
_schemas = itertools.count(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self) -> None:
        self.as_root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="fercomp-pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"])  # fmt: skip

    def _as_postgres(self, argv: list[str]) -> list[str]:
        if not self.as_root:
            return argv
        # setpriv execs postgres in this very process (no intermediate parent), so the
        # parent-death signal set after the uid change reaches the postmaster itself.
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                "--pdeathsig=SIGINT", *argv]  # fmt: skip

    def _run(self, argv: list[str]) -> None:
        out = subprocess.run(self._as_postgres(argv), capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {out.stderr or out.stdout}")

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart, after ``stop``) on the same port and data."""
        assert self.proc is None, "already running"
        argv = [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                "-c", "fsync=on", "-c", "max_connections=200"]  # fmt: skip
        log = open(self.log, "ab")  # noqa: SIM115 - the child holds it
        try:
            self.proc = subprocess.Popen(
                self._as_postgres(argv), stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"postgres did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def ready(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def stop(self, sig: int = signal.SIGINT) -> None:
        """SIGINT: fast shutdown (clients are disconnected, a checkpoint is written), what
        ``pg_ctl stop -m fast`` sends; SIGQUIT: immediate (crash-like) shutdown."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def fresh_url(self) -> str:
        """A URL whose connections see only a new, empty schema (their ``search_path``)."""
        import psycopg

        name = f"t{os.getpid()}_{next(_schemas)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}")
        return f"{self.url}?options=-csearch_path%3D{name}"

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def pg_binaries_present() -> bool:
    return (PG_BIN / "postgres").is_file() and (PG_BIN / "initdb").is_file()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session; skips (with how to install it) without it."""
    if not pg_binaries_present():
        pytest.skip(MISSING)
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root needs setpriv (util-linux) to start postgres as postgres")
    server = PgServer()
    atexit.register(server.destroy)
    try:
        server.start()
        yield server
    finally:
        server.destroy()
        atexit.unregister(server.destroy)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A PostgreSQL URL of an empty schema of its own (the server is shared)."""
    if pg_server.proc is None:
        pg_server.start()  # a test that stopped it and failed before restarting it
    return pg_server.fresh_url()
