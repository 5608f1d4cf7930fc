from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from core.artifacts import read_manifest
from tests.conftest import copy_with_release, pair_codec_with

GROUPS = {
    "defaults": ["tiny-codec/1", "tiny-classifier/1"],
    "a joint pair": ["tiny-codec/2", "tiny-classifier/2"],
}


def table_rows(out: str) -> dict[str, list[str]]:
    """artifact cell -> the row's cells, for every table row of the output."""
    rows = {}
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith("| artifact "):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


@pytest.fixture()
def release_repo(model_repo: Path, tmp_path: Path) -> Path:
    """The tiny repository with a release.json, and tiny-codec/2 paired with tiny-classifier/2."""
    root = copy_with_release(model_repo, tmp_path / "repo", GROUPS)
    pair_codec_with(root / "tiny-codec" / "2", "tiny-classifier/2")
    return root


@pytest.fixture()
def results(release_repo: Path, tmp_path: Path) -> Path:
    """A results folder: one served_accuracy run (tiny-codec/1 through a server), one eval of
    tiny-codec/2 (with its codec id) and the classifiers on uncompressed faces, one perturbed
    eval and one eval on another split that must both be ignored."""
    folder = tmp_path / "results"
    folder.mkdir()
    served = {
        "benchmark": "served_accuracy",
        "argv": ["--data", "x.npz", "--split", "PublicTest", "--json", "s.json"],
        "rows": [
            {"codec": "tiny-codec/1", "classifier": "tiny-classifier/1", "faces": 10,
             "bytes_per_face": 101.25, "served": 0.6, "offline": 0.6, "diff_pt": 0.0},
        ],
    }  # fmt: skip
    (folder / "served.json").write_text(json.dumps(served))
    codec_id = read_manifest(release_repo / "tiny-codec" / "2").codec_id

    def eval_doc(acc: float, **extra: object) -> dict[str, object]:
        return {
            "split": "PublicTest", "n": 10, "limit": None, "perturb": None,
            "created": "2026-01-02T00:00:00+00:00",
            "records": [
                {"codec": "none", "name": "uncompressed", "bytes_per_face": 2304.0,
                 "accuracy_tta": {"tiny-classifier/1": acc, "tiny-classifier/2": acc - 0.1}},
                {"codec": "learned", "name": "tiny-codec/2", "artifact": "tiny-codec/2",
                 "codec_id": codec_id, "bytes_per_face": 222.5,
                 "accuracy_tta": {"tiny-classifier/2": acc - 0.2, "tiny-classifier/1": 0.1}},
            ],
        } | extra  # fmt: skip

    (folder / "eval.json").write_text(json.dumps(eval_doc(0.7)))
    (folder / "perturbed.json").write_text(json.dumps(eval_doc(0.3, perturb={"kind": "client"})))
    (folder / "other-split.json").write_text(json.dumps(eval_doc(0.3, split="PrivateTest")))
    (folder / "notes.json").write_text("[1, 2]")  # not a results JSON: skipped
    return folder


def test_without_release_json_every_artifact_is_listed_with_defaults_marked(
    model_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["models", "--models", str(model_repo), "--results", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "has no release.json" in out.splitlines()[0]
    assert "Figures as served:" in out
    assert set(table_rows(out)) == {
        "tiny-codec/1 (default)",
        "tiny-codec/2",
        "tiny-classifier/1 (default)",
        "tiny-classifier/2",
    }


def test_release_set_by_default_grouped_and_all_on_request(
    model_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = copy_with_release(model_repo, tmp_path / "repo", {"defaults": GROUPS["defaults"]})
    assert main(["models", "--models", str(root), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "release set" in out.splitlines()[0] and "2 of 4 artifacts" in out.splitlines()[0]
    assert "### defaults" in out
    assert set(table_rows(out)) == {"tiny-codec/1 (default)", "tiny-classifier/1 (default)"}

    assert main(["models", "--models", str(root), "--all", "--results", str(tmp_path)]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert len(rows) == 4
    assert rows["tiny-codec/1 (default)"][2] == "yes" and rows["tiny-codec/2"][2] == ""


def test_figures_as_served_with_their_source(
    release_repo: Path, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--models", str(release_repo), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"from {results}" in out
    rows = table_rows(out)
    # columns: artifact, kind, read by, bytes/face, accuracy as served, source
    assert rows["tiny-codec/1 (default)"][2:] == [
        "tiny-classifier/1", "101.2", "60.00 %", "served.json"
    ]  # fmt: skip
    # a listed paired classifier reads its codec's faces: the eval's figure for that pair
    assert rows["tiny-codec/2"][2:] == ["tiny-classifier/2", "222.5", "50.00 %", "eval.json"]
    assert rows["tiny-classifier/1 (default)"][2:] == [
        "(uncompressed faces)", "2304.0", "70.00 %", "eval.json"
    ]  # fmt: skip
    assert rows["tiny-classifier/2"][4] == "60.00 %"


def test_an_unlisted_pair_is_read_by_the_default_and_codec_ids_must_match(
    release_repo: Path, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (release_repo / "release.json").write_text(
        json.dumps({"groups": {"defaults": GROUPS["defaults"], "old codec": ["tiny-codec/2"]}})
    )
    assert main(["models", "--models", str(release_repo), "--results", str(results)]) == 0
    row = table_rows(capsys.readouterr().out)["tiny-codec/2"]
    assert row[2:5] == ["tiny-classifier/1", "222.5", "10.00 %"]  # its pair is not loaded

    doc = json.loads((results / "eval.json").read_text())
    doc["records"][1]["codec_id"] = "00000000"  # other weights under the same name
    (results / "eval.json").write_text(json.dumps(doc))
    assert main(["models", "--models", str(release_repo), "--results", str(results)]) == 0
    assert table_rows(capsys.readouterr().out)["tiny-codec/2"][3:] == ["—", "—", ""]


def test_validation_shows_the_manifest_figures(
    release_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--models", str(release_repo), "--all", "--validation"]) == 0
    out = capsys.readouterr().out
    assert "the trainer's" in out.splitlines()[1]
    head = next(line for line in out.splitlines() if line.startswith("| artifact"))
    assert head.startswith("| artifact | kind | trainer | λ | steps | bytes/face | PSNR |")
    assert len(table_rows(out)) == 4


def test_models_json_by_kind(
    release_repo: Path, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["models", "--models", str(release_repo), "--kind", "codec", "--json"]
    assert main([*args, "--results", str(results)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["ref"] for r in rows] == ["tiny-codec/1", "tiny-codec/2"]
    assert all(r["kind"] == "codec" and len(r["codec_id"]) == 8 for r in rows)
    assert rows[0]["default"] and not rows[1]["default"]
    assert [r["release_group"] for r in rows] == ["defaults", "a joint pair"]
    assert rows[0]["served"] == {
        "split": "PublicTest", "faces": 10, "bytes_per_face": 101.25, "accuracy": 0.6,
        "source": "served.json",
    }  # fmt: skip
    assert rows[1]["read_by"] == "tiny-classifier/2"


def test_models_missing_repository_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--models", str(tmp_path / "nope")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fercomp: error")


def test_models_release_to_stages_the_set(
    model_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = copy_with_release(
        model_repo, tmp_path / "repo", {"defaults": ["tiny-codec/1", "tiny-classifier/1"]}
    )
    out = tmp_path / "release"
    args = ["models", "--models", str(root), "--release-to", str(out), "--kind", "codec"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["artifacts"] == 1 and summary["bytes"] > 0
    assert sorted(p.parent.relative_to(out).as_posix() for p in out.glob("*/*/manifest.json")) == [
        "tiny-codec/1"
    ]
    assert main(args) != 0  # a second run would mix two releases: refused, in one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not empty" in err[0]
