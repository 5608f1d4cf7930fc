"""`fercomp serve` as a real process: JSON logs with the bound ports, SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx


def test_serve_process_and_sigterm(model_repo: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERCOMP_")}
    cmd = [
        sys.executable, "-m", "cli.main", "serve", "--grpc-port", "0", "--http-port", "0",
        "--models", str(model_repo), "--db", str(tmp_path / "p.sqlite3"), "--device", "cpu",
    ]  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        ports = None
        deadline = time.monotonic() + 300  # generous: a loaded CI machine imports torch slowly
        lines = []
        while ports is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("{"):
                rec = json.loads(line)
                if "http_port" in rec:
                    ports = rec
        assert ports is not None, "".join(lines)
        assert ports["level"] == "info" and ports["logger"] == "fercomp.service"
        r = httpx.get(f"http://127.0.0.1:{ports['http_port']}/readyz", timeout=5)
        assert r.status_code == 200 and r.json()["codec"] == "tiny-codec/1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        rest = proc.stderr.read()
        assert '"msg": "stopped"' in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
