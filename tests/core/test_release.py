from __future__ import annotations

from pathlib import Path

import pytest

from core.artifacts import (
    ArtifactError,
    ArtifactNotFound,
    ModelRepository,
    bundled_models_dir,
    read_manifest,
)
from core.release import release_pairs, release_refs, stage_release
from tests.conftest import copy_with_release, pair_codec_with


def _repo_with_release(model_repo: Path, tmp_path: Path, groups: object) -> ModelRepository:
    return ModelRepository(copy_with_release(model_repo, tmp_path / "repo", groups))


PAIR = {"defaults": ["tiny-codec/1", "tiny-classifier/1"], "old codec": ["tiny-codec/2"]}


def test_stage_copies_exactly_the_release_set(model_repo: Path, tmp_path: Path) -> None:
    repo = _repo_with_release(model_repo, tmp_path, PAIR)
    staged = stage_release(repo, tmp_path / "out")
    assert staged.refs == ("tiny-codec/1", "tiny-classifier/1", "tiny-codec/2")
    out = ModelRepository(tmp_path / "out")
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755  # readable by a non-root server
    assert sorted(m.ref for m in out.list()) == sorted(staged.refs)  # tiny-classifier/2 left out
    assert out.defaults() == repo.defaults()
    assert (tmp_path / "out" / "release.json").read_bytes() == (
        repo.root / "release.json"
    ).read_bytes()
    assert staged.bytes == sum(
        p.stat().st_size for r in staged.refs for p in (out.root / r).rglob("*") if p.is_file()
    )


def test_stage_one_kind(model_repo: Path, tmp_path: Path) -> None:
    repo = _repo_with_release(model_repo, tmp_path, PAIR)
    (tmp_path / "out").mkdir()  # an existing empty folder is fine
    staged = stage_release(repo, tmp_path / "out", kind="codec")
    assert staged.refs == ("tiny-codec/1", "tiny-codec/2")
    assert [m.kind for m in ModelRepository(tmp_path / "out").list()] == ["codec", "codec"]


def test_release_without_a_default_is_refused(model_repo: Path, tmp_path: Path) -> None:
    repo = _repo_with_release(model_repo, tmp_path, {"codecs": ["tiny-codec/1", "tiny-codec/2"]})
    with pytest.raises(ArtifactError, match="tiny-classifier/1"):
        stage_release(repo, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is copied


def test_release_naming_a_missing_artifact_is_refused(model_repo: Path, tmp_path: Path) -> None:
    repo = _repo_with_release(model_repo, tmp_path, {"x": [*PAIR["defaults"], "tiny-codec/9"]})
    with pytest.raises(ArtifactNotFound, match="tiny-codec/9"):
        release_refs(repo)


@pytest.mark.parametrize("ref", ["tiny-codec", "../tiny-codec/1", 7])
def test_release_refs_must_pin_a_version(model_repo: Path, tmp_path: Path, ref: object) -> None:
    repo = _repo_with_release(model_repo, tmp_path, {"x": [*PAIR["defaults"], ref]})
    with pytest.raises(ArtifactError):
        release_refs(repo)


@pytest.mark.parametrize("text", ['{"artifacts": []}', "[1, 2]", '{"groups": {"x": "a/1"}}', "{"])
def test_malformed_release_file_is_one_clear_error(
    model_repo: Path, tmp_path: Path, text: str
) -> None:
    repo = _repo_with_release(model_repo, tmp_path, {})
    (repo.root / "release.json").write_text(text)
    with pytest.raises(ArtifactError, match=r"release\.json"):
        release_refs(repo)


def test_repository_without_release_file(model_repo: Path) -> None:
    with pytest.raises(ArtifactError, match=r"no release\.json"):
        release_refs(ModelRepository(model_repo))


def test_stage_refuses_a_non_empty_folder(model_repo: Path, tmp_path: Path) -> None:
    repo = _repo_with_release(model_repo, tmp_path, PAIR)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not empty"):
        stage_release(repo, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_stage_refuses_weights_that_do_not_match_their_manifest(
    model_repo: Path, tmp_path: Path
) -> None:
    repo = _repo_with_release(model_repo, tmp_path, PAIR)
    weights = repo.path("tiny-codec/2") / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(
        ArtifactError, match="tiny-codec/2: the staged copy does not verify: checksum"
    ):
        stage_release(repo, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no half release left behind


def test_stage_names_a_missing_weights_file_as_missing(model_repo: Path, tmp_path: Path) -> None:
    repo = _repo_with_release(model_repo, tmp_path, PAIR)
    (repo.path("tiny-codec/2") / "weights.safetensors").unlink()
    with pytest.raises(
        ArtifactError, match="tiny-codec/2: the staged copy does not verify: weights"
    ):
        stage_release(repo, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bundled_release_set_is_valid_and_holds_the_defaults() -> None:
    repo = ModelRepository(bundled_models_dir())
    refs = release_refs(repo)
    assert set(repo.defaults().values()) <= set(refs)
    kinds = {read_manifest(repo.path(r)).kind for r in refs}
    assert kinds == {"codec", "classifier"}


def test_release_pairs_are_the_defaults_then_released_codecs_with_released_classifiers(
    model_repo: Path, tmp_path: Path
) -> None:
    groups = {**PAIR, "joint pair": ["tiny-classifier/2"]}
    repo = _repo_with_release(model_repo, tmp_path, groups)
    assert release_pairs(repo) == [("tiny-codec/1", "tiny-classifier/1")]  # no codec is paired
    pair_codec_with(repo.path("tiny-codec/2"), "tiny-classifier/2")
    assert read_manifest(repo.path("tiny-codec/2")).paired_classifier == "tiny-classifier/2"
    assert release_pairs(repo) == [
        ("tiny-codec/1", "tiny-classifier/1"),
        ("tiny-codec/2", "tiny-classifier/2"),
    ]
    # a codec whose classifier the release leaves out is not a pair a deployment can serve
    lean = _repo_with_release(model_repo, tmp_path / "lean", PAIR)
    pair_codec_with(lean.path("tiny-codec/2"), "tiny-classifier/2")
    assert release_pairs(lean) == [("tiny-codec/1", "tiny-classifier/1")]


def test_a_paired_default_codec_is_listed_once_with_its_pair(
    model_repo: Path, tmp_path: Path
) -> None:
    """The server reads a paired default codec with its pair, not the default classifier."""
    repo = _repo_with_release(model_repo, tmp_path, {**PAIR, "pair": ["tiny-classifier/2"]})
    pair_codec_with(repo.path("tiny-codec/1"), "tiny-classifier/2")
    assert release_pairs(repo) == [("tiny-codec/1", "tiny-classifier/2")]


def test_bundled_release_pairs_every_joint_codec_with_its_own_classifier() -> None:
    repo = ModelRepository(bundled_models_dir())
    pairs = release_pairs(repo)
    assert pairs[0] == (repo.defaults()["codec"], repo.defaults()["classifier"])
    # joint training names a pair's two artifacts alike (docs/MODELS.md): every released joint
    # codec whose namesake classifier is released must be served with it
    refs = release_refs(repo)
    namesakes = {
        (c, k)
        for c in refs
        if c.startswith("face-hyperprior-joint-")
        and (k := c.replace("face-hyperprior-joint-", "fer-resnet18-joint-")) in refs
    }
    assert len(namesakes) >= 4  # the frontier's joint pairs and the <= 80 B pair
    assert namesakes <= set(pairs[1:])
    assert len({c for c, _ in pairs}) == len(pairs)  # each codec once
