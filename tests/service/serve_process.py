"""`fercomp serve` as a real child process, for tests that signal or kill it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class ServeProcess:
    """Starts ``python -m cli.main serve`` on free loopback ports and waits for its "serving"
    log line (JSON on stderr), which carries the bound ports."""

    def __init__(
        self, model_repo: Path, db: Path, *extra: str, env: dict[str, str] | None = None
    ) -> None:
        """``env``: FERCOMP_* settings for the server (the caller's own are not inherited)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERCOMP_")} | (env or {})
        cmd = [
            sys.executable, "-m", "cli.main", "serve", "--grpc-port", "0", "--http-port", "0",
            "--models", str(model_repo), "--db", str(db), "--device", "cpu", *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        try:
            self.ports: dict[str, Any] = self._wait_for_ports()
        except BaseException:  # pytest-timeout included: never leave a server behind
            self.kill()
            raise

    def _wait_for_ports(self) -> dict[str, Any]:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 300  # generous: a loaded CI machine imports torch slowly
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            if line.startswith("{"):
                rec = json.loads(line)
                if "http_port" in rec:
                    return dict(rec)
        raise AssertionError("server did not start:\n" + "".join(self.lines))

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.ports['grpc_port']}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.ports['http_port']}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class Proc:
    """A process seen in /proc, identified by pid and start time (a pid can be reused)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = _stat(pid)[19]
        self.cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    def alive(self) -> bool:
        """Still running (a zombie waiting to be reaped counts as dead)."""
        try:
            fields = _stat(self.pid)
        except OSError:
            return False
        return fields[19] == self.start and fields[0] not in ("Z", "X")

    def __repr__(self) -> str:
        return f"{self.pid} {self.cmdline[:120]}"


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, ..., starttime at index 19."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[Proc]:
    """Every process below ``pid`` (children of any of its threads, recursively)."""
    found: list[Proc] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:  # the thread ended meanwhile
                continue
            for child in map(int, children):
                try:
                    found.append(Proc(child))
                except OSError:  # it ended meanwhile
                    continue
                todo.append(child)
    return found
