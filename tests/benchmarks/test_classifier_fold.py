"""benchmarks/classifier_fold.py on the tiny repository: both forms timed, agreement counted."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import classifier_fold


def test_classifier_fold_times_both_forms_on_the_same_faces(
    model_repo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fold.json"
    argv = ["--models", str(model_repo), "--faces", "5", "--batch", "1", "4", "--repeat", "1",
            "--precision", "fp32", "--json", str(out)]  # fmt: skip
    assert classifier_fold.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["classifier"] == "tiny-classifier/1" and doc["precision"] == "fp32"
    assert [r["batch"] for r in doc["rows"]] == [1, 4]
    for r in doc["rows"]:
        assert r["trained_ms"] > 0 and r["folded_ms"] > 0 and r["served_ms"] > 0
        assert r["agree"] == "5/5"  # fp32: the same function up to float rounding
