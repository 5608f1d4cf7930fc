"""Client test fixtures: the real server (tiny random-weight models) on free ports, tiny faces.

The client SDK and CLI are tested against ``service.app.Server`` itself, so the wire contract
they check is the one the server keeps (error codes, ListModels, per-item stream errors).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.artifacts import load_codec
from core.face_codec import FaceCodec
from service.app import Server
from service.settings import Settings


def server_settings(model_repo: Path, db_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        grpc_port=0,
        http_port=0,
        models_dir=model_repo,
        db_path=db_path,
        device="cpu",
        max_queue_delay_ms=1.0,
        shutdown_grace=2.0,
        admin_auth_disabled=True,
        log_json=False,
        decode_isolation="inline",  # a spawned decoder costs seconds per server start
    )


@contextmanager
def running_server(model_repo: Path, db_path: Path) -> Iterator[Server]:
    """A started real server; ``f"127.0.0.1:{server.ports.grpc}"`` is its gRPC target."""
    server = Server(server_settings(model_repo, db_path))
    try:
        server.start()
        yield server
    finally:
        server.stop(grace=2.0)


def target_of(server: Server) -> str:
    assert server.ports is not None
    return f"127.0.0.1:{server.ports.grpc}"


def stored(server: Server, n: int) -> list[dict[str, Any]]:
    """The last ``n`` predictions the server stored, oldest first (labels, stream ids)."""
    assert server.state is not None
    records, _ = server.state.store.query(limit=n)
    return records[::-1]


@pytest.fixture(scope="module")
def live_server(
    model_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Server]]:
    """(target, server) shared by a test module."""
    db = tmp_path_factory.mktemp("store") / "predictions.sqlite3"
    with running_server(model_repo, db) as server:
        yield target_of(server), server


@pytest.fixture(scope="module")
def tiny_codec(model_repo: Path) -> FaceCodec:
    return load_codec(model_repo / "tiny-codec" / "1")[0]


def make_faces(n: int, seed: int = 0, size: int = 48) -> list[Image.Image]:
    """Distinct grayscale images: a smooth gradient plus noise (cheap to encode)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for _ in range(n):
        base = 128 + 60 * np.sin(xx / rng.uniform(3, 9)) * np.cos(yy / rng.uniform(3, 9))
        arr = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        out.append(Image.fromarray(arr, mode="L"))
    return out


@pytest.fixture
def faces() -> list[Image.Image]:
    return make_faces(6)
