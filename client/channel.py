"""gRPC channel construction: TLS / mTLS credentials and the retry policy.

Retries use gRPC's built-in retry support, configured through the channel's service config
(``grpc.enable_retries`` + a ``methodConfig`` ``retryPolicy``) rather than a hand-written loop:
the library then retries only calls that have not committed (no response received yet),
replays buffered stream messages, and applies exponential backoff with jitter (each delay is
drawn uniformly from ``[0, current_backoff]``, the backoff growing by ``backoffMultiplier`` up
to ``maxBackoff``). Only ``UNAVAILABLE`` is retried: it means the request never reached the
model (connection refused, server restarting, load balancer draining), so a retry is safe;
``INVALID_ARGUMENT`` (bad bitstream) or ``DEADLINE_EXCEEDED`` would fail again or double work.
gRPC caps ``maxAttempts`` at 5, so at most 4 retries take effect.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc

SERVICE = "fercomp.v1.FerService"
MAX_RETRIES = 4  # gRPC clamps maxAttempts to 5


def service_config(
    retries: int = 3, initial_backoff_s: float = 0.1, max_backoff_s: float = 2.0
) -> str:
    """Service config JSON with a retry policy for every FerService method."""
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    method: dict[str, object] = {"name": [{"service": SERVICE}]}
    if retries > 0:
        method["retryPolicy"] = {
            "maxAttempts": min(retries, MAX_RETRIES) + 1,
            "initialBackoff": f"{initial_backoff_s:g}s",
            "maxBackoff": f"{max_backoff_s:g}s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        }
    return json.dumps({"methodConfig": [method]})


def _read(value: bytes | str | Path | None) -> bytes | None:
    """PEM given as bytes, or a path to a PEM file."""
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


def make_channel(
    target: str,
    tls: bool = False,
    root_certificates: bytes | str | Path | None = None,
    client_cert: bytes | str | Path | None = None,
    client_key: bytes | str | Path | None = None,
    retries: int = 3,
    initial_backoff_s: float = 0.1,
    max_backoff_s: float = 2.0,
    options: list[tuple[str, object]] | None = None,
) -> grpc.Channel:
    """A channel to ``target`` ("host:port"). Giving any certificate implies TLS; a client
    certificate and key together enable mutual TLS."""
    if not target or ":" not in target:
        raise ValueError(f"server address must be HOST:PORT, got {target!r}")
    if (client_cert is None) != (client_key is None):
        raise ValueError("mutual TLS needs both a client certificate and its key")
    opts: list[tuple[str, object]] = [
        ("grpc.enable_retries", 1 if retries > 0 else 0),
        ("grpc.service_config", service_config(retries, initial_backoff_s, max_backoff_s)),
        *(options or []),
    ]
    if tls or root_certificates is not None or client_cert is not None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=_read(root_certificates),  # None: the system's roots
            private_key=_read(client_key),
            certificate_chain=_read(client_cert),
        )
        return grpc.secure_channel(target, creds, options=opts)
    return grpc.insecure_channel(target, options=opts)
