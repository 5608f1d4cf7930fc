from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main


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
