"""The unary and REST load of ``served_throughput`` from a child process, for
``--clients process``: the same client threads and calls, but in an interpreter of their own, so
the server's threads no longer share their interpreter lock with the client's (a real client
runs elsewhere). The child still runs on this machine's cores.

The parent writes the payloads to a file, runs ``python -m benchmarks.load_client`` and reads
back ``run_concurrently``'s result (faces/s, p50, p99) as JSON.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.common import run_child, write_json

TRANSPORTS = ("grpc", "rest")


def write_payloads(path: Path, payloads: Sequence[bytes]) -> None:
    with path.open("wb") as f:
        for p in payloads:
            f.write(struct.pack("<I", len(p)))
            f.write(p)


def read_payloads(path: Path) -> list[bytes]:
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        out.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    return out


def run_in_child(transport: str, port: int, payloads: Sequence[bytes], threads: int) -> Any:
    """``run_concurrently`` of ``threads`` clients of ``transport`` at ``port``, in a child
    process; its result dict."""
    with tempfile.TemporaryDirectory(prefix="fercomp-load-") as tmp:
        faces = Path(tmp) / "payloads.bin"
        write_payloads(faces, payloads)
        args = [transport, str(port), str(faces), "--threads", str(threads)]
        return run_child("benchmarks.load_client", args)


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.served_throughput import grpc_client_at, rest_at, run_concurrently

    p = argparse.ArgumentParser(prog="python -m benchmarks.load_client", description=__doc__)
    p.add_argument("transport", choices=TRANSPORTS)
    p.add_argument("port", type=int)
    p.add_argument("payloads", type=Path, help="length-prefixed bitstreams (write_payloads)")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    payloads = read_payloads(args.payloads)
    with ExitStack() as stack:
        if args.transport == "grpc":
            _, call = stack.enter_context(grpc_client_at(args.port))
        else:
            call = stack.enter_context(rest_at(args.port))
        write_json(args.json, run_concurrently(call, payloads, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
