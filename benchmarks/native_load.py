"""The unary, stream and REST loads of ``served_throughput`` from native load generators, for
``--clients native``: wrk (REST, one connection per client) and h2load (gRPC unary, one
HTTP/2 connection with one stream per client, as the Python clients share one channel; gRPC
stream, one ClassifyStream call at a time carrying every face).

Why: on a small machine the Python client threads cost the server cores (0.41 ms of CPU per
unary face, 0.78 per REST face here) and, as threads of the server's process, its interpreter
lock; and each of their calls takes ~1 ms of Python to turn around, time a closed loop waits
with the engine idle. A C load generator turns a call around in microseconds and spends little
CPU: what is left is the server's own cost, as a client on another machine would see it.
The same holds for the stream: a Python client iterating it in the server's process took
the interpreter lock per face both ways (1,024 faces, three alternations, one server: 702-730
faces/s against 745-806 from h2load).

Neither tool speaks gRPC: h2load posts one length-prefixed ``ClassifyRequest`` (the face whose
bitstream is the median size) with gRPC's headers per unary call, or every face's, one after
the other, as the body of one stream, and counts HTTP statuses only. So every run
is checked against the server's own count (``fercomp_requests_total``): the requests the tool
finished must all be there as ``ok``, and nothing else may have been counted, or the run fails.
wrk cycles through every face (a Lua script loads them from files).

Debian packages: ``wrk`` and ``nghttp2-client`` (h2load).
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from proto.fercomp.v1 import fercomp_pb2
from proto.wire import SERVICE_NAME

TOOLS = {"wrk": "wrk", "h2load": "nghttp2-client"}  # tool -> the Debian package that has it
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}

WRK_SCRIPT = """
local bodies = {}
init = function(args)
  for i = 1, %(count)d do
    local f = assert(io.open("%(dir)s/" .. i .. ".bin", "rb"))
    bodies[i] = f:read("*a")
    f:close()
  end
end
local n = 0
request = function()
  n = n %% #bodies + 1
  return wrk.format("POST", "/v1/classify",
                    {["Content-Type"] = "application/octet-stream"}, bodies[n])
end
"""


def missing_tools() -> str | None:
    """None when both tools are on PATH, else what to install."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not missing:
        return None
    packages = " ".join(TOOLS[t] for t in missing)
    return f"--clients native needs {', '.join(missing)}: apt-get install {packages}"


def check_clients(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--clients native`` without the tools: the parser's usage error, naming them."""
    if args.clients == "native" and (missing := missing_tools()):
        parser.error(missing)


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(text: str) -> dict[str, Any]:
    """wrk's report (run with ``--latency``) -> requests, seconds, p50/p99/max ms, failed."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    if done is None:
        raise RuntimeError(f"wrk printed no request count:\n{text}")
    percentile = r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)"
    pct = {p: _ms(v, u) for p, v, u in re.findall(percentile, text, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    unit = r"(?:us|ms|s|m)"  # Thread Stats: average, deviation, max
    longest = re.search(rf"Latency\s+[\d.]+{unit}\s+[\d.]+{unit}\s+([\d.]+)(us|ms|s|m)", text)
    failed = int(non_2xx.group(1)) if non_2xx else 0
    failed += sum(map(int, sockets.groups())) if sockets else 0
    why = [f"{non_2xx.group(1)} non-2xx"] if non_2xx else []
    if sockets:
        kinds = zip(("connect", "read", "write", "timeout"), sockets.groups(), strict=True)
        why += [f"{n} {kind}" for kind, n in kinds if n != "0"]
    return {
        "requests": int(done.group(1)),
        "seconds": _ms(done.group(2), done.group(3)) / 1e3,
        "p50_ms": pct.get("50"),
        "p99_ms": pct.get("99"),
        "max_ms": _ms(*longest.groups()) if longest else None,
        "failed": failed,
        "why": ", ".join(why),  # which failures, for the message of a failed check
    }


def parse_h2load(text: str) -> dict[str, Any]:
    """h2load's report -> requests (succeeded), seconds, mean and max ms, failed."""
    finished = re.search(r"finished in ([\d.]+)(us|ms|s|m),", text)
    counts = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        text,
    )
    if finished is None or counts is None:
        raise RuntimeError(f"h2load printed no summary:\n{text}")
    timing = re.search(r"time for request:\s+\S+\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", text)
    _, ok, failed, errored, timeout = map(int, counts.groups())
    return {
        "requests": ok,
        "seconds": _ms(finished.group(1), finished.group(2)) / 1e3,
        "mean_ms": _ms(*timing.groups()[2:]) if timing else None,
        "max_ms": _ms(*timing.groups()[:2]) if timing else None,
        "failed": failed + errored + timeout,
    }


def _run(cmd: list[str], timeout: float) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {done.returncode}: {done.stderr or done.stdout}")
    return done.stdout


def rest_wrk(port: int, payloads: Sequence[bytes], clients: int, seconds: float) -> dict:
    """``clients`` keep-alive connections posting the faces in turn for ``seconds`` (wrk
    takes whole seconds: rounded, at least 1)."""
    with tempfile.TemporaryDirectory(prefix="fercomp-wrk-") as tmp:
        for i, p in enumerate(payloads, 1):
            Path(tmp, f"{i}.bin").write_bytes(p)
        script = Path(tmp, "post.lua")
        script.write_text(WRK_SCRIPT % {"count": len(payloads), "dir": tmp})
        cmd = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency",
               "-s", str(script), f"http://127.0.0.1:{port}"]  # fmt: skip
        return parse_wrk(_run(cmd, seconds + 60))


def grpc_frame(payload: bytes) -> bytes:
    """One gRPC message on the wire: uncompressed flag, big-endian length, the request."""
    msg = fercomp_pb2.ClassifyRequest(bitstream=payload).SerializeToString()
    return b"\0" + struct.pack(">I", len(msg)) + msg


def median_face(payloads: Sequence[bytes]) -> bytes:
    return sorted(payloads, key=len)[len(payloads) // 2]


def unary_h2load(port: int, payload: bytes, clients: int, seconds: float) -> dict:
    """One connection, ``clients`` concurrent Classify calls of ``payload`` for ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="fercomp-h2load-") as tmp:
        body = Path(tmp, "request.grpc")
        body.write_bytes(grpc_frame(payload))
        cmd = ["h2load", "-t1", "-c1", f"-m{clients}", "-D", f"{round(seconds * 1e3)}ms",
               "-d", str(body),
               "-H", "content-type: application/grpc", "-H", "te: trailers",
               f"http://127.0.0.1:{port}/{SERVICE_NAME}/Classify"]  # fmt: skip
        return parse_h2load(_run(cmd, seconds + 60))


def stream_h2load(port: int, payloads: Sequence[bytes], seconds: float) -> dict:
    """ClassifyStream calls one after the other on one connection, each carrying every face
    in ``payloads`` (length-prefixed ``ClassifyRequest`` messages, all in one request body),
    for about ``seconds``: one call first, untimed (warm-up; it also tells how many calls take
    that long, at least two), then the measured ones. h2load cannot stop a stream midway
    without cancelling it. ``requests`` counts faces: the server answers every face of a call
    it finishes."""
    with tempfile.TemporaryDirectory(prefix="fercomp-h2load-") as tmp:
        body = Path(tmp, "stream.grpc")
        body.write_bytes(b"".join(grpc_frame(p) for p in payloads))

        def calls(n: int) -> dict:
            cmd = ["h2load", "-t1", "-c1", "-m1", f"-n{n}", "-d", str(body),
                   "-H", "content-type: application/grpc", "-H", "te: trailers",
                   f"http://127.0.0.1:{port}/{SERVICE_NAME}/ClassifyStream"]  # fmt: skip
            return parse_h2load(_run(cmd, 60 + 2 * seconds))

        one = calls(1)
        if one["failed"] or one["requests"] != 1:
            return one | {"requests": 0}  # checked() reports it
        result = calls(max(2, min(10_000, round(seconds / max(one["seconds"], 1e-3)))))
    # h2load's times are per call (every face), not per face: no latency column for this row.
    faces = result["requests"] * len(payloads)
    return result | {"requests": faces, "mean_ms": None, "max_ms": None}


def checked(run: Callable[[], dict], counts: Callable[[], dict[str, float]], tool: str) -> dict:
    """``run()``'s result, once the server's request counts (status -> count, for the load's
    transport) say that every request the tool finished was answered ``ok`` and nothing failed.
    Returns the row's figures: faces, seconds, faces/s, latency."""
    before = counts()
    result = run()
    after = counts()
    delta = {s: after.get(s, 0.0) - before.get(s, 0.0) for s in after}
    errors = {s: n for s, n in delta.items() if s != "ok" and n}
    ok = delta.get("ok", 0.0)
    # The tool stops at its deadline with calls in flight: the server may have answered a few
    # more than the tool counted, never fewer.
    if result["failed"] or errors or ok < result["requests"] or result["requests"] == 0:
        raise RuntimeError(
            f"{tool}: {result['requests']} requests done, {result['failed']} failed "
            f"({result.get('why') or 'no detail'}); the server counted {ok:.0f} ok and "
            f"{errors or 'no errors'}"
        )
    out = {
        "faces": result["requests"],
        "seconds": result["seconds"],
        "faces_per_s": result["requests"] / result["seconds"],
        "p50_ms": result.get("p50_ms"),
        "p99_ms": result.get("p99_ms"),
        "max_ms": result.get("max_ms"),
    }
    if "mean_ms" in result:
        out["mean_ms"] = result["mean_ms"]
    return out
