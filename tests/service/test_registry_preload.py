"""What a server loads at start-up (issue 35): the release set by default, not the history."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from core.artifacts import ModelRepository
from service.registry import ModelRegistry
from service.settings import Settings
from tests.conftest import copy_with_release


def _loaded(root: Path, preload: str) -> list[str]:
    registry = ModelRegistry(ModelRepository(root))
    registry.load_initial(preload)  # type: ignore[arg-type]
    return sorted(c.ref for c in registry.codecs())


def test_release_is_the_default_setting() -> None:
    assert Settings.model_fields["preload_codecs"].default == "release"
    assert Settings.model_fields["decode_v1_prestart"].default is False


def test_release_loads_only_the_codecs_release_json_names(model_repo: Path, tmp_path: Path) -> None:
    root = copy_with_release(
        model_repo, tmp_path / "r", {"served": ["tiny-codec/1", "tiny-classifier/1"]}
    )
    codecs = {p.parent.name + "/" + p.name for p in root.glob("tiny-codec/*")}
    assert len(codecs) > 1  # the repository holds more versions than the release names
    assert _loaded(root, "release") == ["tiny-codec/1"]
    assert _loaded(root, "all") == sorted(codecs)
    assert _loaded(root, "default") == ["tiny-codec/1"]


def test_release_adds_every_listed_codec_and_skips_a_missing_one(
    model_repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = copy_with_release(
        model_repo,
        tmp_path / "r",
        {"served": ["tiny-codec/1", "tiny-classifier/1"], "old": ["tiny-codec/2", "gone/9"]},
    )
    with caplog.at_level(logging.WARNING, logger="fercomp"):
        assert _loaded(root, "release") == ["tiny-codec/1", "tiny-codec/2"]
    assert "gone/9" in caplog.text


def test_without_release_json_release_means_the_whole_repository(model_repo: Path) -> None:
    assert not (model_repo / "release.json").exists()
    assert _loaded(model_repo, "release") == _loaded(model_repo, "all")


def test_classifiers_are_served_with_their_batchnorms_folded(model_repo: Path) -> None:
    """At start-up and after a swap (docs/MODELS.md, "Folded BatchNorm")."""
    registry = ModelRegistry(ModelRepository(model_repo))
    registry.load_initial("default")
    registry.swap("classifier", "tiny-classifier/2")
    served = [registry.active_classifier, *map(registry.classifier_for, registry.codecs())]
    for clf in served:
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in clf.model.modules())
        assert not clf.model.training
    assert registry.active_classifier.ref == "tiny-classifier/2"
