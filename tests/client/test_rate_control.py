"""Rate control out of the box, against a real server on real release codecs: a byte target or
a bandwidth budget picks among the release set's operating points; no flag, the default codec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from cli.main import main
from client.sdk import FerClient
from tests.client.conftest import REAL_POINTS, hopper_frames

DEFAULT = "face-hyperprior-fer-l0.025/2"
FPS = 10.0


def write_face_video(path: Path, n: int = 30) -> Path:
    """A real video file (MJPG in AVI, 10 fps): jittered frames of the Grace Hopper photo."""
    frames = hopper_frames(n)
    h, w = frames[0].shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")  # type: ignore[attr-defined]
    writer = cv2.VideoWriter(str(path), fourcc, FPS, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


Row = dict[str, Any]


def _stream(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[list[Row], Row]:
    rc = main(["stream", *args, "--json", "--detect-faces"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 0, lines[-1]
    return lines[:-1], lines[-1]["summary"]


def test_stream_stays_within_the_budget(
    real_server: tuple[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, _ = real_server
    video = str(write_face_video(tmp_path / "faces.avi"))
    # No flag: the default codec only, as before (these faces cost ~310 B with it).
    rows, summary = _stream([video, "--server", target], capsys)
    assert {r["codec_version"] for r in rows} == {DEFAULT}
    default_bps = summary["rate"]["sent_bps"]
    budget = 14_400.0  # 180 B per face at 10 fps: well under what the default codec needs
    assert default_bps > 1.5 * budget
    rows, summary = _stream([video, "--server", target, "--budget-bps", str(budget)], capsys)
    rate = summary["rate"]
    assert len(rows) == 30 and rate["faces"] == 30 and rate["fps"] == FPS
    assert rate["sent_bytes"] == sum(r["bytes_sent"] for r in rows)
    assert rate["sent_bps"] <= budget  # the whole video within B
    sizes = [r["bytes_sent"] for r in rows]
    share = budget / 8 / FPS
    assert all(sum(sizes[:k]) <= k * share for k in range(1, len(sizes) + 1))  # at every frame
    assert not any(r["face"]["codec_over_budget"] for r in rows)
    used = {r["codec_version"] for r in rows}
    assert used <= set(REAL_POINTS) and len(used) >= 2  # several served operating points
    assert rate["sent_bps"] > 0.8 * budget  # and the budget is used, not wasted
    assert all(r["classifier_version"] for r in rows)


def test_target_bytes_picks_among_the_served_release_points(
    real_server: tuple[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target, _ = real_server
    folder = tmp_path / "faces"
    folder.mkdir()
    for i, frame in enumerate(hopper_frames(4, seed=1)):
        cv2.imwrite(str(folder / f"f{i}.png"), frame)
    rc = main(["classify", str(folder), "--server", target, "--json", "--target-bytes", "220"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    # The server loads every point of the small release set, and lists it: all are candidates.
    assert sorted(doc["summary"]["codecs"]) == sorted(REAL_POINTS)
    assert all(r["bytes_sent"] <= 220 and r["face"]["target_bytes"] == 220 for r in doc["results"])
    assert {r["codec_version"] for r in doc["results"]} <= set(REAL_POINTS) - {DEFAULT}
    # Without a target: the default codec only, bytes as before.
    rc = main(["classify", str(folder), "--server", target, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["codecs"] == [DEFAULT]
    assert {r["codec_version"] for r in doc["results"]} == {DEFAULT}


def test_sdk_narrows_to_what_the_server_lists(real_server: tuple[str, object]) -> None:
    target, _ = real_server
    with FerClient(target) as client:
        assert client.encoder.refs == [DEFAULT]
        enc = client.encoder_for(200)
        assert sorted(enc.refs) == sorted(REAL_POINTS)
        p = client.classify(hopper_frames(1)[0], target_bytes=200)
        assert p.bytes_sent <= 200 and p.codec_version in REAL_POINTS
    # A server that lists only some of them: the others are never picked.
    listed = [m for m in client_models(target) if m["name"] != "face-hyperprior-fer-l0.0067"]
    with FerClient(target) as client:
        client.list_models = lambda: listed  # type: ignore[method-assign]
        enc = client.encoder_for(200)
        assert "face-hyperprior-fer-l0.0067/3" not in enc.refs and len(enc.refs) == 3
    # A server that lists none: the default codec.
    with FerClient(target) as client:
        client.list_models = lambda: []  # type: ignore[method-assign]
        assert client.encoder_for(200).refs == [DEFAULT]


def client_models(target: str) -> list[dict[str, Any]]:
    with FerClient(target) as client:
        return client.list_models()


def test_stream_sdk_budget_on_frames(real_server: tuple[str, object]) -> None:
    target, _ = real_server
    frames = hopper_frames(20, seed=2)
    with FerClient(target) as client:
        res = list(client.stream(frames, detect_faces=True, budget_bps=9600.0, fps=8.0))
    sizes = [r.bytes_sent for r in res]
    assert len(sizes) == 20 and sum(sizes) <= 20 * 9600 / 8 / 8
    assert all(s >= 1 for s in sizes)
    assert np.all([not r.face.codec_over_budget for r in res])  # type: ignore[union-attr]
