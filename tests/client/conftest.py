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


# -- the real release codecs (committed under models/), for rate control and mirror checks ----
REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
#: A small release set of real artifacts: the default pair, a newer and an older version of one
#: rate read by the default classifier, and two joint pairs (codec + paired classifier).
REAL_RELEASE = {
    "served defaults": ["face-hyperprior-fer-l0.025/2", "fer-resnet18-webp/2"],
    "other rates read by the default classifier": ["face-hyperprior-fer-l0.0067/3"],
    "the version it replaces": ["face-hyperprior-fer-l0.0067/2"],
    "joint pairs": [
        "face-hyperprior-joint-l0.0012/30",
        "fer-resnet18-joint-l0.0012/30",
        "face-hyperprior-joint-l0.0067/30",
        "fer-resnet18-joint-l0.0067/30",
    ],
}
#: The operating points client.operating_points picks from it (release order).
REAL_POINTS = [
    "face-hyperprior-fer-l0.025/2",
    "face-hyperprior-fer-l0.0067/3",
    "face-hyperprior-joint-l0.0012/30",
    "face-hyperprior-joint-l0.0067/30",
]


@pytest.fixture(scope="session")
def real_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository of real release artifacts (copied from models/) with a release.json."""
    import json
    import shutil

    root = tmp_path_factory.mktemp("real-models")
    refs = [r for group in REAL_RELEASE.values() for r in group]
    missing = [r for r in refs if not (REPO_MODELS / r / "manifest.json").is_file()]
    if missing:
        pytest.skip(f"release artifacts not in {REPO_MODELS}: {missing}")
    for ref in refs:
        shutil.copytree(REPO_MODELS / ref, root / ref)
    (root / "defaults.json").write_text(
        json.dumps({"codec": "face-hyperprior-fer-l0.025/2", "classifier": "fer-resnet18-webp/2"})
    )
    (root / "release.json").write_text(json.dumps({"groups": REAL_RELEASE}))
    return root


@pytest.fixture(scope="module")
def real_server(
    real_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Server]]:
    """(target, server) serving ``real_models``; the client's bundled repository
    ($FERCOMP_MODELS_DIR) is the same folder while it runs."""
    db = tmp_path_factory.mktemp("real-store") / "predictions.sqlite3"
    with pytest.MonkeyPatch.context() as mp, running_server(real_models, db) as server:
        mp.setenv("FERCOMP_MODELS_DIR", str(real_models))
        yield target_of(server), server


def hopper_photo() -> Image.Image:
    """matplotlib's sample photo of Grace Hopper (what ``make demo`` uses), RGB."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"matplotlib's sample photo is not installed ({path})")
    return Image.open(path).convert("RGB")


def hopper_frames(n: int, side: int = 160, seed: int = 0) -> list[np.ndarray[Any, Any]]:
    """``n`` BGR video frames: the photo's face region, jittered in position and scale."""
    from cli.demo import jittered_crops

    crops = jittered_crops(hopper_photo(), n, side, seed)
    return [np.ascontiguousarray(np.asarray(im)[:, :, ::-1]) for im in crops]
