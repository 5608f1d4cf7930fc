"""Shared fixtures: tiny random-weight artifacts (fast on CPU) and the dataset path."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.artifacts import save_classifier, save_codec
from core.classifier import ClassifierConfig, FERClassifier
from core.codec import CodecConfig, FaceHyperprior

TINY_CODEC = CodecConfig(N=16, M=24, in_channels=1)
TINY_CLASSIFIER = ClassifierConfig(width=8)


def make_model_repo(root: Path) -> Path:
    """A model repository with two codec versions and two classifier versions."""
    for version, seed in (("1", 0), ("2", 1)):
        torch.manual_seed(seed)
        save_codec(FaceHyperprior(TINY_CODEC), root / "tiny-codec" / version, "tiny-codec", version)
        save_classifier(
            FERClassifier(TINY_CLASSIFIER),
            root / "tiny-classifier" / version,
            "tiny-classifier",
            version,
        )
    (root / "defaults.json").write_text(
        json.dumps({"codec": "tiny-codec/1", "classifier": "tiny-classifier/1"})
    )
    return root


def copy_with_release(model_repo: Path, root: Path, groups: object) -> Path:
    """A copy of ``model_repo`` at ``root`` with a ``release.json`` of these groups."""
    shutil.copytree(model_repo, root)
    (root / "release.json").write_text(json.dumps({"groups": groups}))
    return root


def pair_codec_with(codec_dir: Path, classifier: str) -> None:
    """Record ``classifier`` as the codec's paired classifier, as ``fercomp train joint`` does
    (``Manifest.paired_classifier`` reads it back)."""
    f = codec_dir / "manifest.json"
    m = json.loads(f.read_text())
    m["training"] = {**m.get("training", {}), "classifier_artifact": classifier}
    f.write_text(json.dumps(m))


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only for tests; copy it (shutil.copytree) before modifying."""
    return make_model_repo(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def fer_npz() -> Path:
    """The FER2013 archive; tests that need it skip with a clear message when absent."""
    path = Path(
        os.environ.get("FERCOMP_DATA", Path(__file__).parents[1] / "../shared/data/fer2013.npz")
    )
    if not path.is_file():
        pytest.skip(f"FER2013 archive not found at {path} (set FERCOMP_DATA)")
    return path.resolve()


def joint_release_repo(model_repo: Path, root: Path) -> Path:
    """A release of ``model_repo``: the defaults, and tiny-codec/2 as a joint pair with
    tiny-classifier/2 (its manifest names it, as ``fercomp train joint`` writes it)."""
    groups = {"defaults": ["tiny-codec/1", "tiny-classifier/1"],
              "joint pair": ["tiny-codec/2", "tiny-classifier/2"]}  # fmt: skip
    copy_with_release(model_repo, root, groups)
    pair_codec_with(root / "tiny-codec" / "2", "tiny-classifier/2")
    return root


def random_faces_npz(path: Path, n: int, split: str = "PublicTest") -> Path:
    """``n`` random 48x48 faces with random labels, laid out like fer2013.npz."""
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (n, 48, 48), dtype=np.uint8),
             labels=rng.integers(0, 7, n), split=np.array([split] * n))  # fmt: skip
    return path


# PostgreSQL for the store tests (tests/pg_server.py): skipped with a message where absent.
from tests.pg_server import pg_server, pg_url  # noqa: E402, F401
