"""The edge client runs without torch: the edge install (`pip install 'fercomp[edge]'`) has none.

Nothing is installed here: each check runs the client in a subprocess whose ``sitecustomize``
(first on ``PYTHONPATH``) makes torch, torchvision and CompressAI unimportable, as on the edge
install, and drives ``fercomp encode | classify | stream | models`` end to end. The static
side of the same promise is the import-linter contract "the edge path never imports torch or
compressai" (pyproject.toml).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.edge_codec import EdgeCodec
from core.face_image import face_to_array
from core.manifest import ModelRepository
from service.app import Server
from tests.client.conftest import make_faces, running_server, target_of
from tests.client.test_video import write_video

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
TORCH_STACK = ("torch", "torchvision", "compressai")
BLOCKER = f"""
import sys

BLOCKED = {TORCH_STACK!r}


class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            msg = f"No module named {{name!r}} (blocked: edge install)"
            raise ModuleNotFoundError(msg, name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
"""
EDGE_MODULES = (
    "cli.main",
    "cli.client_cmds",
    "cli.codec_cmds",
    "cli.fleet_cmds",
    "cli.models_cmd",
    "client",
    "client.sdk",
    "client.edge_codec",
    "client.encoder",
    "client.faces",
    "client.operating_points",
    "client.bandwidth",
    "client.sync",
    "client.video",
    "core.edge_codec",
    "core.release",
)


@pytest.fixture(scope="module")
def blocker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("notorch")
    (d / "sitecustomize.py").write_text(BLOCKER)
    return d


def run(args: list[str], blocker: Path | None, **env: str) -> subprocess.CompletedProcess[str]:
    path = [str(blocker)] if blocker else []
    environ = os.environ | env | {"PYTHONPATH": os.pathsep.join([*path, str(REPO)])}
    environ.pop("FERCOMP_DEBUG", None)
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=environ, capture_output=True, text=True, timeout=240
    )


def fercomp(args: list[str], blocker: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run(["-m", "cli.main", *args], blocker, **env)


def default_codec_dir() -> Path:
    repo = ModelRepository(MODELS)
    return repo.path(repo.defaults()["codec"])


def test_the_edge_modules_import_without_torch(blocker: Path) -> None:
    check = (
        "import sys\n"
        f"for m in {EDGE_MODULES!r}: __import__(m)\n"
        "import cli.main\n"
        "cli.main.build_parser()\n"  # every command group that imports without torch
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {TORCH_STACK!r})\n"
        "assert not loaded, loaded\n"
    )
    plain = run(["-c", check], None)  # torch installed here, and still not imported
    assert plain.returncode == 0, plain.stderr
    blocked = run(["-c", check + "import torch"], blocker)  # and the blocker does block
    last = blocked.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError") and "blocked: edge install" in last, last


def test_the_blocker_blocks(blocker: Path) -> None:
    r = run(["-c", "import compressai"], blocker)
    assert r.returncode != 0 and "blocked: edge install" in r.stderr


def test_encode_json_without_torch(blocker: Path, tmp_path: Path) -> None:
    faces = make_faces(2, seed=11)
    for i, im in enumerate(faces):
        im.save(tmp_path / f"f{i}.png")
    r = fercomp(["encode", str(tmp_path), "-o", str(tmp_path / "out"), "--json"], blocker)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    art = default_codec_dir()
    edge = EdgeCodec.load(art)
    assert doc["summary"]["encoder"] == "onnxruntime"
    assert doc["summary"]["codec"] == edge.manifest.ref
    assert doc["summary"]["faces"] == 2
    for row, im in zip(doc["files"], faces, strict=True):
        payload = Path(row["output"]).read_bytes()
        assert row["bytes"] == len(payload)
        # The same bytes the edge codec writes in this (torch-ful) process.
        assert payload == edge.encode(face_to_array(im)[None])[0]


def test_a_codec_without_bundle_is_a_clear_error_without_torch(
    blocker: Path, model_repo: Path, tmp_path: Path
) -> None:
    make_faces(1)[0].save(tmp_path / "f.png")
    codec = model_repo / "tiny-codec" / "1"  # no edge/ bundle
    args = ["encode", str(tmp_path / "f.png"), "-o", str(tmp_path / "o"), "--codec", str(codec)]
    r = fercomp(args, blocker)
    assert r.returncode == 2
    assert "no edge bundle" in r.stderr and "torch is not installed" in r.stderr
    assert "Traceback" not in r.stderr


def test_models_listing_without_torch(blocker: Path) -> None:
    r = fercomp(["models", "--kind", "codec", "--json"], blocker)
    assert r.returncode == 0, r.stderr
    refs = [json.loads(line)["ref"] for line in r.stdout.splitlines()]
    assert default_codec_dir().relative_to(MODELS).as_posix() in refs


@pytest.fixture(scope="module")
def real_codec_server(
    model_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A server holding the bundled default codec (its edge bundle too) + a tiny classifier."""
    root = tmp_path_factory.mktemp("realcodec") / "models"
    art = default_codec_dir()
    ref = art.relative_to(MODELS).as_posix()
    shutil.copytree(art, root / ref)
    shutil.copytree(model_repo / "tiny-classifier" / "1", root / "tiny-classifier" / "1")
    (root / "defaults.json").write_text(
        json.dumps({"codec": ref, "classifier": "tiny-classifier/1"})
    )
    db = tmp_path_factory.mktemp("store") / "predictions.sqlite3"
    server: Server
    with running_server(root, db) as server:
        yield target_of(server), root / ref


def test_classify_and_stream_without_torch(
    blocker: Path, real_codec_server: tuple[str, Path], tmp_path: Path
) -> None:
    target, codec = real_codec_server
    for i, im in enumerate(make_faces(3, seed=4)):
        im.save(tmp_path / f"face{i}.png")
    common = ["--server", target, "--codec", str(codec), "--json"]
    r = fercomp(["classify", str(tmp_path), *common], blocker)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    ref = codec.relative_to(codec.parents[1]).as_posix()
    assert [row["codec_version"] for row in doc["results"]] == [ref] * 3
    assert doc["summary"]["errors"] == 0 and doc["summary"]["codecs"] == [ref]
    assert np.mean([row["bytes_sent"] for row in doc["results"]]) > 16

    video = write_video(tmp_path / "v.avi", 4)
    r = fercomp(["stream", str(video), "--max-frames", "3", *common], blocker)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["frame"] for row in lines[:-1]] == [0, 1, 2]
    assert all(row["codec_version"] == ref for row in lines[:-1])
    assert lines[-1]["summary"]["errors"] == 0


def test_budgeted_stream_without_torch(
    blocker: Path, real_server: tuple[str, Server], real_models: Path, tmp_path: Path
) -> None:
    """`fercomp stream --budget-bps` picks among the release operating points the server
    serves, on the edge install too."""
    from tests.client.test_rate_control import write_face_video

    target, _ = real_server
    video = write_face_video(tmp_path / "faces.avi", 12)
    args = ["stream", str(video), "--server", target, "--budget-bps", "14400", "--json"]
    r = fercomp([*args, "--detect-faces"], blocker, FERCOMP_MODELS_DIR=str(real_models))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    rate = lines[-1]["summary"]["rate"]
    assert rate["faces"] == 12 and rate["sent_bps"] <= 14400
    assert len({row["codec_version"] for row in lines[:-1]}) >= 2
