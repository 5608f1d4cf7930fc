"""What `fercomp serve` costs to start on a model repository: time to ready, memory, metrics.

    .venv/bin/python -m benchmarks.serve_startup

Starts ``fercomp serve`` (a real process, loopback ports, a fresh prediction database) once
per configuration, one after the other, and reports:

* ``ready s``: from the process start to the first ``GET /readyz`` answering 200;
* ``models``: what ``GET /v1/models`` lists (codecs + classifiers held in memory);
* ``RSS MB``: resident memory of the server and of every process under it (the v1 decoder's
  forkserver and child, when started), read from /proc once ready;
* ``series``: ``fercomp_*`` sample lines of ``GET /metrics`` once ready (no traffic yet).

Configurations (``--config NAME:VAR=VALUE,...``; environment variables of the settings):

* ``whole repository`` (before issue 35): ``FERCOMP_PRELOAD_CODECS=all`` with the v1 decoder
  process started at start-up (``FERCOMP_DECODE_V1_PRESTART=true``);
* ``defaults``: the release set (``models/release.json``), the v1 decoder started on the first
  v1 face.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks.common import finish, serve_process

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIGS = [
    "whole repository:FERCOMP_PRELOAD_CODECS=all,FERCOMP_DECODE_V1_PRESTART=true",
    "defaults:",
]


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except OSError:
        return 0, ""


def measure(
    name: str, env_pairs: dict[str, str], models: Path, timeout: float
) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        proc, rec = serve_process(Path(tmp) / "p.sqlite3", "cpu", models, env_pairs)
        try:
            port = rec["http_port"]
            base = f"http://127.0.0.1:{port}"
            while _get(f"{base}/readyz")[0] != 200:
                if time.monotonic() - t0 > timeout:
                    raise RuntimeError(f"{name}: not ready after {timeout} s")
                time.sleep(0.05)
            ready = time.monotonic() - t0
            time.sleep(1.0)  # let start-up threads settle before reading memory
            rss = _rss_mb([proc.pid, *_descendants(proc.pid)])
            models_doc = json.loads(_get(f"{base}/v1/models")[1])
            listed = models_doc["models"] if isinstance(models_doc, dict) else models_doc
            metrics = _get(f"{base}/metrics")[1]
            series = sum(1 for ln in metrics.splitlines() if ln.startswith("fercomp_"))
        finally:
            proc.kill()
            proc.wait(30)
    return {
        "config": name,
        "ready_s": round(ready, 1),
        "models": len(listed),
        "rss_mb": round(rss),
        "series": series,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--config", action="append", default=[], metavar="NAME:VAR=V,...")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    rows = []
    for spec in a.config or DEFAULT_CONFIGS:
        name, _, pairs = spec.partition(":")
        env = dict(p.split("=", 1) for p in pairs.split(",") if p)
        rows.append(measure(name, env, a.models, a.timeout))
        print(rows[-1], file=sys.stderr, flush=True)
    columns = [("config", "configuration"), ("ready_s", "ready s"), ("models", "models"),
               ("rss_mb", "RSS MB"), ("series", "fercomp_* series")]  # fmt: skip
    return finish("serve_startup", argv, columns, rows, a.json)


if __name__ == "__main__":
    sys.exit(main())
