"""`fercomp report`: Markdown section, plots and BD-rates from synthetic eval JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.report import (
    BEGIN,
    END,
    bd_tables,
    merge_evals,
    render_samples,
    sample_rows,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"
ACC = [0.40, 0.52, 0.60, 0.65]
JPEG_RATES = [250.0, 400.0, 600.0, 900.0]


def record(codec: str, name: str, family: str, rate: float, acc: float, **kw: Any) -> dict:
    return {
        "codec": codec, "name": name, "family": family, "quality": kw.get("quality"),
        "artifact": kw.get("artifact"), "codec_id": None,
        "paired_classifier": kw.get("paired"), "bytes_per_face": rate, "bytes_min": int(rate),
        "bytes_max": int(rate), "bpp": 8 * rate / 2304, "psnr": None if codec == "none" else
        20 + 10 * np.log10(rate / 100), "ms_ssim": 0.9, "accuracy": {"clf/1": acc, "clf/2": 0.1},
        "macro_f1": {"clf/1": acc / 2, "clf/2": 0.05},
    }  # fmt: skip


def synthetic_doc(records: list[dict], **kw: Any) -> dict:
    return {
        "schema": "fercomp-eval/1", "dataset": "fer.npz", "split": "PublicTest", "n": 100,
        "classifiers": ["clf/1", "clf/2"], "primary_classifier": "clf/1", "device": "cpu",
        "created": "2025-01-01T00:00:00+00:00", "command": "fercomp eval", "records": records,
        **kw,
    }  # fmt: skip


def baseline_records() -> list[dict]:
    recs = [record("none", "uncompressed", "uncompressed", 2304, 0.68)]
    for q, r, a in zip((5, 10, 30, 50), JPEG_RATES, ACC, strict=True):
        recs.append(record("jpeg", f"jpeg-q{q}", "jpeg", r, a, quality=q))
        recs.append(record("webp", f"webp-q{q}", "webp", r * 0.8, a, quality=q))
    return recs


def learned_records() -> list[dict]:
    recs = []
    for i, (r, a) in enumerate(zip(JPEG_RATES, ACC, strict=True)):
        # finetune: half of JPEG's bytes for the same accuracy -> BD-rate -50 % vs jpeg
        recs.append(record("learned", f"finetune-{i}/1", "finetune", r / 2, a, artifact=f"ft{i}/1"))
        # joint: measured with its paired classifier clf/2 (clf/1 would be useless here)
        rec = record("learned", f"joint-{i}/1", "joint", r / 4, 0.0, artifact=f"joint-{i}/1")
        rec["accuracy"]["clf/2"], rec["paired_classifier"] = a, "clf/2"
        recs.append(rec)
    return recs


def test_bd_tables_known_answers() -> None:
    recs = baseline_records() + learned_records()
    table = bd_tables(recs, "clf/1")
    assert set(table) == {"finetune", "joint"}
    assert table["finetune"]["jpeg"][0] == pytest.approx(-50.0)
    assert table["finetune"]["webp"][0] == pytest.approx(-37.5)  # 0.5 / 0.8 - 1
    assert table["joint"]["jpeg"][0] == pytest.approx(-75.0)  # paired classifier used
    assert table["joint"]["finetune"][0] == pytest.approx(-50.0)
    assert "uncompressed" not in table["joint"]


def test_bd_tables_as_served_read_flip_tta_accuracy_of_the_paired_classifier() -> None:
    """The as-served table reads accuracy_tta (joint points: their paired classifier's); points
    without it drop out, and the raw table is unchanged by it."""
    recs = baseline_records() + learned_records()
    for r in recs:
        if r["family"] in ("jpeg", "joint"):  # served: jpeg as before, joint at a quarter of it
            r["accuracy_tta"] = {k: v + 0.01 for k, v in r["accuracy"].items()}
    raw = bd_tables(recs, "clf/1")
    served = bd_tables(recs, "clf/1", "accuracy_tta")
    assert set(served) == {"joint"} and set(served["joint"]) == {"jpeg"}
    assert served["joint"]["jpeg"][0] == pytest.approx(-75.0)
    assert served["joint"]["jpeg"][0] == pytest.approx(raw["joint"]["jpeg"][0])
    assert bd_tables(learned_records() + baseline_records(), "clf/1") == raw


def test_report_adds_the_as_served_table_only_when_eval_files_have_flip_tta(
    tmp_path: Path,
) -> None:
    recs = baseline_records() + learned_records()
    path, out = tmp_path / "a.json", tmp_path / "docs"
    path.write_text(json.dumps(synthetic_doc(recs)))
    write_report([path], out)
    before = (out / "RESULTS.md").read_text()
    assert "as served (flip TTA" not in before
    for r in recs:
        r["accuracy_tta"] = dict(r["accuracy"])
    path.write_text(json.dumps(synthetic_doc(recs)))
    write_report([path], out)
    md = (out / "RESULTS.md").read_text()
    assert md.count("BD-rate on the accuracy-rate curve as served (flip TTA") == 1
    rows = [line for line in md.splitlines() if line.startswith("| joint | ")]
    # one more row in each of the two as-served tables: BD-rate and bytes to reach an accuracy
    assert len(rows) == 2 + sum(line.startswith("| joint | ") for line in before.splitlines())


def test_report_reads_accuracy_and_psnr_at_equal_bytes_as_served_when_it_can(
    tmp_path: Path,
) -> None:
    recs = baseline_records() + learned_records()
    recs += [  # the same WebP files read by another classifier (here: the same scores)
        {**r, "name": r["name"] + "+adapted", "family": "webp+adapted"}
        for r in recs
        if r["family"] == "webp"
    ]
    path, out = tmp_path / "a.json", tmp_path / "docs"
    path.write_text(json.dumps(synthetic_doc(recs)))
    write_report([path], out)
    raw = (out / "RESULTS.md").read_text()
    assert "Accuracy (raw) each family has at a byte budget" in raw
    assert "The same as served" not in raw
    # finetune-1/1 spends 200 B, where WebP (200 B at 40 %, 320 B at 52 %) is at 40 %
    equal = raw.split("Each learned point against the other codecs")[1].splitlines()
    row = next(line for line in equal if line.startswith("| finetune-1/1 |"))
    assert row.split("|")[2].strip() == "200.0" and "40.00 % (+12.00 pt)" in row
    # PSNR: WebP read by two classifiers is one column, accuracy has both
    assert equal[2] == "| operating point | bytes/face | value | jpeg | webp | webp+adapted |"
    psnr = raw.split("The same for PSNR")[1].splitlines()[2]
    assert psnr == "| operating point | bytes/face | value | jpeg | webp |"
    for r in recs:
        r["accuracy_tta"] = {k: v + 0.01 for k, v in r["accuracy"].items()}
    path.write_text(json.dumps(synthetic_doc(recs)))
    write_report([path], out)
    served = (out / "RESULTS.md").read_text()
    assert "Accuracy (as served, flip TTA) each family has at a byte budget" in served
    assert served.count("The same as served (flip TTA; targets below") == 1
    equal = served.split("Each learned point against the other codecs")[1].splitlines()
    row = next(line for line in equal if line.startswith("| finetune-1/1 |"))
    assert "53.00 % | " in row and "41.00 % (+12.00 pt)" in row


def test_write_report_files_and_splice(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(synthetic_doc(baseline_records())))
    b.write_text(json.dumps(synthetic_doc(learned_records(), classifiers=["clf/1", "clf/2"])))
    out = tmp_path / "docs"
    out.mkdir()
    (out / "RESULTS.md").write_text(
        f"# Results\n\nHand-written intro.\n\n{BEGIN}\nold\n{END}\n\ntail\n"
    )
    written = write_report([a, b], out)
    md = (out / "RESULTS.md").read_text()
    assert written[0] == out / "RESULTS.md"
    for png in written[1:]:
        assert png.read_bytes()[:8] == PNG
    assert "Hand-written intro." in md and "tail" in md and "\nold\n" not in md
    assert md.count(BEGIN) == 1 and md.count(END) == 1
    assert "| jpeg-q5 | jpeg | 250.0 |" in md and "| joint-0/1 | joint |" in md
    assert "-50.0 %" in md and "-75.0 %" in md
    assert "figures/accuracy_vs_rate.png" in md
    # Re-rendering is idempotent.
    write_report([a, b], out)
    assert (out / "RESULTS.md").read_text() == md


def test_report_cli_families_and_classifier(tmp_path: Path) -> None:
    from tests.training.test_eval import run_cli

    recs = baseline_records() + learned_records()
    for r in recs:
        if r["codec"] == "learned":
            r["family"] = "x"
    path = tmp_path / "e.json"
    path.write_text(json.dumps(synthetic_doc(recs)))
    out = tmp_path / "out"
    rc = run_cli("report", "--eval", str(path), "--out", str(out), "--family", "ft=ft0,ft1/1")
    assert rc == 0
    md = (out / "RESULTS.md").read_text()
    assert "| finetune-0/1 | ft |" in md and "| finetune-1/1 | ft |" in md
    # --md: the generated section goes into another page of the folder (docs/experiments/LOG.md)
    (out / "LOG.md").write_text(f"# Log\n\nintro\n\n{BEGIN}\nold\n{END}\n\ntail\n")
    assert run_cli("report", "--eval", str(path), "--out", str(out), "--md", "LOG.md") == 0
    log = (out / "LOG.md").read_text()
    assert log.startswith("# Log\n\nintro") and log.endswith("tail\n") and "\nold\n" not in log
    assert "| finetune-0/1 |" in log and "figures/accuracy_vs_rate.png" in log
    with pytest.raises(ValueError, match="--md expects"):
        run_cli("report", "--eval", str(path), "--out", str(out), "--md", "../LOG.md")
    with pytest.raises(ValueError, match="not in the eval"):
        run_cli("report", "--eval", str(path), "--out", str(out), "--classifier", "nope/1")
    with pytest.raises(ValueError, match="NAME=REF"):
        run_cli("report", "--eval", str(path), "--out", str(out), "--family", "bad")


def test_merge_separate_runs_and_not_enough_points(tmp_path: Path) -> None:
    first = synthetic_doc(baseline_records()[:2])
    second = synthetic_doc([record("learned", "c/1", "c", 40.0, 0.3)])
    other = synthetic_doc(baseline_records()[:2], split="Training")
    groups = merge_evals([first, second, other])
    assert [len(g["records"]) for g in groups] == [3, 2]
    assert bd_tables(groups[0]["records"], "clf/1") == {}  # one point per family: no BD-rate
    p = tmp_path / "e.json"
    p.write_text(json.dumps(first | {"records": groups[0]["records"]}))
    write_report([p], tmp_path / "o")
    assert "_No BD-rate on accuracy" in (tmp_path / "o" / "RESULTS.md").read_text()


def test_sample_grid(tmp_path: Path) -> None:
    recs = baseline_records() + learned_records()
    doc = synthetic_doc(recs)
    decoded = [np.full((3, 48, 48), i, np.uint8) for i in range(len(recs))]
    rows = sample_rows(doc, decoded)
    assert [label.split("\n")[0] for label, _ in rows] == [
        "joint-0/1", "finetune-0/1", "webp-q5", "jpeg-q5",
    ]  # fmt: skip
    render_samples(np.zeros((3, 48, 48), np.uint8), rows, tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG


def test_not_an_eval_json(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text("[]")
    with pytest.raises(ValueError, match="not a fercomp eval JSON"):
        write_report([p], tmp_path)


def test_merge_keeps_scores_of_classifiers_only_the_earlier_run_used() -> None:
    early = record("none", "uncompressed", "uncompressed", 2304.0, 0.64)
    late = record("none", "uncompressed", "uncompressed", 2304.0, 0.66)
    late["accuracy"] = {"clf/2": 0.66, "joint/3": 0.645}
    late["macro_f1"] = {"clf/2": 0.6, "joint/3": 0.58}
    (merged,) = merge_evals([synthetic_doc([early]), synthetic_doc([late])])
    (r,) = merged["records"]
    assert r["accuracy"] == {"clf/1": 0.64, "clf/2": 0.66, "joint/3": 0.645}
    assert r["macro_f1"] == {"clf/1": 0.32, "clf/2": 0.6, "joint/3": 0.58}


def test_perturbed_faces_are_reported_apart_from_the_split_as_it_is(tmp_path: Path) -> None:
    clean = synthetic_doc(baseline_records()[:2])
    perturbed = synthetic_doc(baseline_records()[:2]) | {"perturb": {"kind": "client", "seed": 0}}
    groups = merge_evals([clean, perturbed])
    assert len(groups) == 2  # never merged into one curve
    p = tmp_path / "p.json"
    p.write_text(json.dumps(perturbed))
    write_report([p], tmp_path / "o")
    assert "perturbed (client, seed 0)" in (tmp_path / "o" / "RESULTS.md").read_text()


def test_one_codec_on_the_curves_of_two_families() -> None:
    from training.report import apply_families

    recs = learned_records()
    apply_families(recs, {"old": ["ft0/1", "ft1/1"], "new": ["ft1/1", "ft2/1"]})
    fams = [(r["name"], r["family"]) for r in recs if r["name"].startswith("finetune")]
    assert fams == [
        ("finetune-0/1", "old"),
        ("finetune-1/1", "old"),
        ("finetune-1/1", "new"),
        ("finetune-2/1", "new"),
        ("finetune-3/1", "finetune"),
    ]
    table = bd_tables(recs, "clf/1")
    assert {"old", "new"} <= set(table) and "new" in table["old"]
