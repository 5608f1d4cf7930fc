"""`fercomp serve`: run the gRPC + REST server (flags override FERCOMP_* settings)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the inference server (gRPC + REST)",
        description="Run the fercomp server. Every setting can also come from a FERCOMP_* "
        "environment variable (see docs/SERVING.md); flags win. The admin token for model "
        "swaps is read from FERCOMP_ADMIN_TOKEN only (never a flag: flags show up in ps).",
    )
    p.add_argument("--grpc-port", type=int, help="gRPC port (default 50051; 0 = any free)")
    p.add_argument("--http-port", type=int, help="REST port (default 8000; 0 = any free)")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--models", metavar="DIR", help="model repository (default: bundled models)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default auto")
    p.add_argument(
        "--preload",
        choices=("release", "all", "default"),
        help="codecs loaded at start-up: release (default: models/release.json's set), all "
        "(every version in the repository), default (defaults.json's pair only)",
    )
    p.add_argument(
        "--precision", choices=("auto", "bf16", "fp32"), help="synthesis + classifier; default auto"
    )
    p.add_argument("--db", metavar="PATH", help="prediction store (sqlite3 file)")
    p.add_argument("--max-batch-size", type=int, help="default 32")
    p.add_argument("--max-queue-delay-ms", type=float, help="default 5")
    p.add_argument("--canary", metavar="NPZ", help="labelled set for the swap accuracy guard")
    p.add_argument("--tls-cert", metavar="PEM", help="server certificate: TLS on gRPC and REST")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    p.add_argument(
        "--tls-client-ca", metavar="PEM", help="require gRPC client certificates from this CA"
    )
    p.add_argument("--log-format", choices=("json", "text"), help="default json")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Any:
    from pydantic import ValidationError

    from service.settings import Settings

    overrides = {
        "grpc_port": args.grpc_port,
        "http_port": args.http_port,
        "host": args.host,
        "models_dir": args.models,
        "device": args.device,
        "preload_codecs": args.preload,
        "inference_precision": args.precision,
        "db_path": args.db,
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.max_queue_delay_ms,
        "canary_data": args.canary,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca,
        "log_json": None if args.log_format is None else args.log_format == "json",
    }
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = ".".join(str(x) for x in err.get("loc", ()))
        raise ValueError(f"invalid setting {where}: {msg}" if where else msg) from None


def run(args: argparse.Namespace) -> int:
    from service.app import Server
    from service.logs import configure_logging

    settings = settings_from_args(args)
    configure_logging(settings.log_level, settings.log_json)
    server = Server(settings)
    server.serve_forever()
    return 0
