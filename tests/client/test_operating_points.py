"""Which codecs rate control chooses from (client.operating_points) and the stream budget."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli.models_cmd import Results
from client.encoder import EdgeEncoder, StreamBudget
from client.operating_points import (
    AS_SERVED,
    release_operating_points,
    release_point_choices,
    served_points,
)
from core.manifest import ModelRepository, read_manifest
from tests.client.conftest import REPO_MODELS
from tests.conftest import pair_codec_with

#: The release set's operating points (models/release.json), in release order.
RELEASE_POINTS = [
    "face-hyperprior-fer-l0.025/2",
    "face-hyperprior-fer-l0.0067/3",
    "face-hyperprior-fer-l0.08/4",
    "face-hyperprior-joint-l0.0067/30",
    "face-hyperprior-joint-l0.025/30",
    "face-hyperprior-joint-l0.08/22",
    "face-hyperprior-joint-l0.0012/30",
]


def test_release_set_operating_points() -> None:
    choices = release_point_choices(REPO_MODELS)
    assert [c.ref for c in choices if c.kept] == RELEASE_POINTS
    assert len(choices) == 18  # every codec of the set, each with its verdict
    why = {c.ref: c.why for c in choices}
    assert "superseded by face-hyperprior-fer-l0.0067/3" in why["face-hyperprior-fer-l0.0067/2"]
    assert "not released" in why["face-hyperprior-joint-l0.025/3"]
    assert "trained for no classifier" in why["face-hyperprior-l0.0018/1"]
    assert "face-hyperprior-joint-l0.0012/30" in why["face-hyperprior-fer-l0.0018/2"]
    assert "as accurate or more" in why["face-hyperprior-joint-l0.15/22"]
    readers = {c.ref: c.reader for c in choices if c.kept}
    assert readers["face-hyperprior-joint-l0.0067/30"] == "fer-resnet18-joint-l0.0067/30"
    assert readers["face-hyperprior-fer-l0.0067/3"] == "fer-resnet18-webp/2"
    # Kept points, in bytes order, are in accuracy order as served: a frontier.
    pts = sorted(AS_SERVED[r] for r in RELEASE_POINTS)
    assert all(b[1] > a[1] for a, b in itertools.pairwise(pts))


def test_as_served_figures_are_the_results_ones() -> None:
    """AS_SERVED is what `fercomp models` prints from docs/results (same rounding)."""
    folder = REPO_MODELS.parent / "docs" / "results"
    if not folder.is_dir():
        pytest.skip("docs/results is not in this checkout")
    results = Results.read(folder)
    by_ref = {c.ref: c for c in release_point_choices(REPO_MODELS)}
    for ref, (size, acc) in AS_SERVED.items():
        served = results.codec(read_manifest(REPO_MODELS / ref), str(by_ref[ref].reader))
        assert served is not None, ref
        assert served.bytes_per_face == pytest.approx(size, abs=0.006), ref
        assert served.accuracy == pytest.approx(acc, abs=0.00006), ref
    # Every codec of the set that has a figure as served and passes the other rules is listed.
    for c in release_point_choices(REPO_MODELS):
        if c.kept or "as accurate or more" in c.why:
            assert c.ref in AS_SERVED


def _retrain(art: Path, ref: str, classifier: str | None) -> None:
    f = art / "manifest.json"
    m = json.loads(f.read_text())
    m["name"], m["version"] = ref.split("/")
    m["training"] = {"config": {"classifier": classifier or ""}}
    f.write_text(json.dumps(m))


def _copy_art(root: Path, src: str, ref: str, trained_for: str | None) -> None:
    shutil.copytree(root / src, root / ref)
    _retrain(root / ref, ref, trained_for)


def test_rules_on_a_repository(model_repo: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(model_repo, root)
    # tiny-codec/1 is the default codec; /2 is a newer version fine-tuned for the default
    # classifier, /3 a newer one trained for no classifier.
    _retrain(root / "tiny-codec" / "2", "tiny-codec/2", "models/tiny-classifier/1")
    _copy_art(root, "tiny-codec/2", "tiny-codec/3", None)
    _copy_art(root, "tiny-codec/2", "tiny-ft/1", "runs/x/tiny-classifier/1")
    _copy_art(root, "tiny-codec/2", "tiny-ft/2", "runs/x/tiny-classifier/1")
    _copy_art(root, "tiny-codec/2", "tiny-joint/1", None)
    pair_codec_with(root / "tiny-joint" / "1", "tiny-classifier/2")
    _copy_art(root, "tiny-codec/2", "tiny-joint/2", None)
    pair_codec_with(root / "tiny-joint" / "2", "tiny-classifier/9")  # not released
    _copy_art(root, "tiny-codec/2", "tiny-other/1", "models/tiny-classifier/2")
    # Without release.json the whole repository is the set.
    assert release_operating_points(root) == [
        "tiny-codec/1",
        "tiny-codec/2",
        "tiny-ft/2",
        "tiny-joint/1",
    ]
    groups = {
        "defaults": ["tiny-codec/1", "tiny-classifier/1"],
        "rest": ["tiny-ft/1", "tiny-joint/1", "tiny-joint/2", "tiny-codec/2", "tiny-other/1"],
        "pair": ["tiny-classifier/2"],
    }
    (root / "release.json").write_text(json.dumps({"groups": groups}))
    choices = {c.ref: c for c in release_point_choices(root)}
    assert [r for r, c in choices.items() if c.kept] == [
        "tiny-codec/1",
        "tiny-ft/1",  # the newest *released* version of tiny-ft
        "tiny-joint/1",
        "tiny-codec/2",
    ]
    assert "tiny-ft/2" not in choices  # not released
    assert "tiny-classifier/9 is not released" in choices["tiny-joint/2"].why
    assert "trained for tiny-classifier/2" in choices["tiny-other/1"].why
    assert choices["tiny-joint/1"].reader == "tiny-classifier/2"
    # The client image ships the codecs without the classifiers: same answer.
    for ref in ("tiny-classifier/1", "tiny-classifier/2"):
        shutil.rmtree(root / ref)
    assert [c.ref for c in release_point_choices(root) if c.kept] == [
        r for r, c in choices.items() if c.kept
    ]
    enc = EdgeEncoder.release(root=root)
    assert sorted(enc.refs) == sorted(r for r, c in choices.items() if c.kept)


def _listing(repo: ModelRepository, refs: list[str], active_clf: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for ref in refs:
        m = read_manifest(repo.path(ref))
        rows.append(
            {
                "name": m.name,
                "version": m.version,
                "kind": m.kind,
                "codec_id": m.codec_id or "",
                "active": ref == active_clf or ref == "face-hyperprior-fer-l0.025/2",
                "sha256": m.sha256,
            }
        )
    return rows


def test_served_points_follow_what_the_server_loaded() -> None:
    repo = ModelRepository(REPO_MODELS)
    manifests = [read_manifest(repo.path(r)) for r in RELEASE_POINTS]
    default = "face-hyperprior-fer-l0.025/2"
    everything = [
        *RELEASE_POINTS,
        "fer-resnet18-webp/2",
        *(read_manifest(repo.path(r)).paired_classifier or "" for r in RELEASE_POINTS[3:]),
    ]
    rows = _listing(repo, everything, "fer-resnet18-webp/2")
    assert served_points(manifests, rows, default) == RELEASE_POINTS
    # A codec the server does not have, or has with other weights, is never picked.
    partial = [r for r in rows if r["name"] != "face-hyperprior-fer-l0.08"]
    partial[0] = {**partial[0], "sha256": "0" * 64}  # the default codec, other weights
    got = served_points(manifests, partial, default)
    assert default not in got and "face-hyperprior-fer-l0.08/4" not in got
    # A joint codec whose classifier is not loaded would be read by the active one: left out.
    no_pair = [r for r in rows if r["name"] != "fer-resnet18-joint-l0.0067"]
    assert "face-hyperprior-joint-l0.0067/30" not in served_points(manifests, no_pair, default)
    # Another active classifier: the codecs fine-tuned for the default one are left out,
    # the default codec and the joint pairs stay.
    other = _listing(repo, [*everything, "fer-resnet18/13"], "fer-resnet18/13")
    for r in other:
        if r["name"] == "fer-resnet18-webp":
            r["active"] = False
    assert served_points(manifests, other, default) == [
        default,
        *RELEASE_POINTS[3:],
    ]


def test_stream_budget_keeps_the_stream_within_it() -> None:
    rng = np.random.default_rng(0)
    fps, bps = 7.5, 9000.0  # 150 B per face, 1125 B per second
    budget = StreamBudget(bps, fps)
    sent = []
    for _ in range(300):
        target = budget.next_target()
        assert target >= 150  # every face may spend at least its share
        # a face's sizes at a few operating points; the smallest always fits the share
        sizes = [int(rng.integers(60, 150)), *(int(v) for v in rng.integers(150, 500, 4))]
        size = max((s for s in sizes if s <= target), default=min(sizes))
        assert size <= target
        budget.spend(size)
        sent.append(size)
    share = bps / 8 / fps
    assert all(sum(sent[:k]) <= k * share + 1e-6 for k in range(1, len(sent) + 1))
    # any stretch of one second (8 faces at 7.5/s) is within one second plus the burst
    assert max(sum(sent[i : i + 8]) for i in range(len(sent))) <= 2 * bps / 8
    assert sum(sent) > 0.9 * len(sent) * share  # the budget is used, not wasted
    assert max(sent) > 2 * share  # bytes a small face left went to a later one


def test_stream_budget_pays_back_a_face_over_budget() -> None:
    budget = StreamBudget(8000.0, 10.0, burst_s=0.25)  # 100 B per face, 250 B of burst
    assert budget.next_target() == 100
    budget.spend(250)  # nothing fitted: 150 B over
    assert budget.next_target() == 1  # owes 150, has 100: the smallest point, flagged
    budget.spend(60)
    assert budget.next_target() == 1  # still 10 B in debt
    budget.spend(50)
    assert budget.next_target(cap=500) == 40  # paid back
    budget.spend(0)
    for _ in range(5):
        budget.next_target()
        budget.spend(0)
    assert budget.next_target() == 250  # unused bytes are kept up to the burst
    assert budget.next_target(cap=30) == 30
    with pytest.raises(ValueError):
        StreamBudget(8000.0, None)
