"""What the checks of `make stack-test` share: where the stack answers, how a check and a
figure are printed, subprocess/HTTP/PromQL helpers, and the compose stack itself
(deploy/local/stack_checks.py). Standard library only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "fercomp"
NETWORK = f"{PROJECT}_default"
PROM = "http://127.0.0.1:9090"
REST = "http://127.0.0.1:8000"
HAPROXY_STATS = "http://127.0.0.1:8404/stats;csv"
T0 = time.monotonic()
FAILED: list[str] = []


def log(msg: str) -> None:
    print(f"[checks {time.monotonic() - T0:5.0f}s] {msg}", file=sys.stderr, flush=True)


def check(n: int, ok: bool, what: str) -> bool:
    print(f"CHECK {n} {'PASS' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        FAILED.append(f"{n}: {what}")
    return ok


def figure(name: str, value: object) -> None:
    print(f"FIGURE {name} {value}", flush=True)


def run(cmd: list[str], check_rc: bool = True, timeout: float = 600) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check_rc and p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:6])} ... exit {p.returncode}: {p.stderr.strip()[-800:]}"
        )
    return p.stdout


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def prom(query: str) -> list[dict[str, Any]]:
    """Instant query; raises on a parse/evaluation error."""
    url = f"{PROM}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    status, body = http(url)
    doc = json.loads(body)
    if status != 200 or doc.get("status") != "success":
        raise ValueError(f"{doc.get('errorType')}: {doc.get('error')}")
    return doc["data"]["result"]


def scalar(query: str) -> float | None:
    res = prom(query)
    return float(res[0]["value"][1]) if res else None


def wait_for(what: str, fn: Any, timeout: float, every: float = 2.0) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:
            last = e
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def client(args: list[str], faces: Path, name: str | None = None) -> list[str]:
    """docker run of the client image on the compose network, hardened like the servers."""
    cmd = [
        "docker",
        "run",
        "--rm",
        "--network",
        NETWORK,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges:true",
        "-v",
        f"{faces}:/faces:ro",
        "-v",
        f"{ROOT / 'deploy/local'}:/stack:ro",
    ]
    if name:
        cmd += ["--name", name]
    return cmd + args


# -- the stack ---------------------------------------------------------------------------------
class Stack:
    def __init__(self, compose: list[str], faces: Path) -> None:
        self.compose = compose
        self.faces = faces

    def up(self, *services: str) -> float:
        t = time.monotonic()
        cmd = ["up", "-d", "--wait", "--wait-timeout", "400", "--no-build", *services]
        run([*self.compose, *cmd], timeout=420)
        return time.monotonic() - t

    def container(self, service: str, index: int = 1) -> str:
        return f"{PROJECT}-{service}-{index}"

    def classify_cli(self) -> dict[str, Any]:
        out = run(
            client(
                [
                    "fercomp-client:local",
                    "classify",
                    "/faces/happy",
                    "--label",
                    "happy",
                    "--server",
                    "fercomp:50051",
                    "--json",
                ],
                self.faces,
            ),
            timeout=300,
        )
        return json.loads(out)

    def traffic(self, *args: str) -> list[str]:
        return client(
            ["--entrypoint", "python", "fercomp-client:local", "/stack/stack_client.py", *args],
            self.faces,
        )
