"""Fixtures for server tests: settings on free ports, encoded payloads, in-process servers."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from core.artifacts import load_codec
from proto.fercomp.v1 import fercomp_pb2_grpc
from service.app import Server
from service.settings import Settings
from service.state import ServiceState


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read FERCOMP_* variables: the developer's shell must not leak into tests."""
    import os

    for key in list(os.environ):
        if key.startswith("FERCOMP_") and key not in ("FERCOMP_DATA", "FERCOMP_DEBUG"):
            monkeypatch.delenv(key)


@pytest.fixture
def repo_copy(model_repo: Path, tmp_path: Path) -> Path:
    """A writable copy of the model repository (swaps, corruption)."""
    return Path(shutil.copytree(model_repo, tmp_path / "models"))


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(model_repo: Path, tmp_path: Path) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = dict(
            host="127.0.0.1",
            grpc_port=0,
            http_port=0,
            models_dir=model_repo,
            db_path=tmp_path / "predictions.sqlite3",
            device="cpu",
            max_queue_delay_ms=1.0,
            shutdown_grace=5.0,
            # A spawned decoder process costs seconds of imports per server start; the process
            # mode itself is tested in test_decode_worker.py.
            decode_isolation="inline",
            # A full collection of this test process at every server start would cost the
            # suite seconds; test_heap.py runs servers with the default (on).
            gc_freeze=False,
        )
        return Settings(**(base | overrides))

    return make


def _encode(
    model_repo: Path, ref: str, n: int, seed: int, version: int | None = None
) -> list[bytes]:
    codec, _ = load_codec(model_repo / ref)
    g = torch.Generator().manual_seed(seed)
    return codec.encode(torch.rand(n, 1, 48, 48, generator=g), version=version)


@pytest.fixture(scope="session")
def payloads_v1(model_repo: Path) -> list[bytes]:
    """Bitstreams from tiny-codec/1 (the default codec)."""
    return _encode(model_repo, "tiny-codec/1", 16, seed=0)


@pytest.fixture(scope="session")
def format_v1_payloads(model_repo: Path) -> list[bytes]:
    """tiny-codec/1's faces in bitstream format v1 (old clients: the isolated rANS decoder)."""
    return _encode(model_repo, "tiny-codec/1", 8, seed=0, version=1)


@pytest.fixture(scope="session")
def payloads_v2(model_repo: Path) -> list[bytes]:
    """Bitstreams from tiny-codec/2."""
    return _encode(model_repo, "tiny-codec/2", 4, seed=1)


class Live:
    """A started server plus clients for both transports."""

    def __init__(self, server: Server) -> None:
        assert server.ports is not None and server.state is not None
        self.server = server
        self.state: ServiceState = server.state
        self.ports = server.ports
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.ports.http}", timeout=10.0)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.ports.grpc}")
        self.stub = fercomp_pb2_grpc.FerServiceStub(self.channel)

    def http_refused(self) -> bool:
        try:
            with httpx.Client(base_url=str(self.http.base_url), timeout=1.0) as fresh:
                fresh.get("/healthz")
        except httpx.TransportError:
            return True
        return False

    def metrics(self) -> str:
        return self.http.get("/metrics").text

    def close(self) -> None:
        self.http.close()
        self.channel.close()


@contextmanager
def running(settings: Settings) -> Iterator[Live]:
    server = Server(settings)
    server.start()
    live = Live(server)
    try:
        yield live
    finally:
        live.close()
        server.stop(grace=2.0)


def metric(text: str, name: str, /, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def write_canary(path: Path) -> Path:
    """A canary set (24 random labelled faces) for the swap accuracy guard, at ``path``."""
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (24, 48, 48), dtype=np.uint8),
             labels=rng.integers(0, 7, 24))  # fmt: skip
    return path
