from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from tests.conftest import copy_with_release


def test_models_table_marks_defaults(model_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--models", str(model_repo)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| artifact | kind |")
    rows = {line.split("|")[1].strip(): line for line in out[2:]}
    assert set(rows) == {
        "tiny-codec/1 (default)",
        "tiny-codec/2",
        "tiny-classifier/1 (default)",
        "tiny-classifier/2",
    }


def test_models_json_by_kind(model_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--models", str(model_repo), "--kind", "codec", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["ref"] for r in rows] == ["tiny-codec/1", "tiny-codec/2"]
    assert all(r["kind"] == "codec" and len(r["codec_id"]) == 8 for r in rows)
    assert rows[0]["default"] and not rows[1]["default"]


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
