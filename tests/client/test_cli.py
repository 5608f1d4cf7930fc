"""`fercomp classify` / `fercomp stream` against the real server."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cli.main import main
from tests.client.conftest import make_faces, stored
from tests.client.test_sdk import free_port


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i, img in enumerate(make_faces(4, seed=7)):
        img.save(root / ("sub" if i % 2 else ".") / f"face{i}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def test_classify_folder_json(live_server, model_repo: Path, image_dir: Path, capsys) -> None:
    target, server = live_server
    codec = str(model_repo / "tiny-codec" / "1")
    rc = main(
        [
            "classify",
            str(image_dir),
            "--server",
            target,
            "--codec",
            codec,
            "--json",
            "--label",
            "happy",
            "--concurrency",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads(out)
    assert len(doc["results"]) == 4
    assert [Path(r["path"]).name for r in doc["results"]] == [
        "face0.png",
        "face2.png",
        "face1.png",
        "face3.png",
    ]  # sorted, recursive
    assert all(r["codec_version"] == "tiny-codec/1" and r["label"] == 3 for r in doc["results"])
    bw = doc["summary"]["bandwidth"]
    assert bw["faces"] == 4 and bw["sent_bytes"] == sum(r["bytes_sent"] for r in doc["results"])
    assert bw["jpeg_bytes"] > bw["sent_bytes"] and bw["raw_bytes"] == 4 * 48 * 48
    assert doc["summary"]["errors"] == 0 and doc["summary"]["accuracy"] is not None
    assert [r["label"] for r in stored(server, 4)] == [3, 3, 3, 3]  # labels reached it


def test_classify_text_with_default_codec_and_rate_control(
    live_server, model_repo: Path, image_dir: Path, capsys, monkeypatch
) -> None:
    target, _ = live_server
    monkeypatch.setenv("FERCOMP_MODELS_DIR", str(model_repo))
    rc = main(["classify", str(image_dir / "face0.png"), "--server", target])
    out = capsys.readouterr().out
    assert rc == 0 and "face0.png" in out and "JPEG q=30" in out and "faces: 1" in out
    # A model repository as --codec: all its codecs are operating points.
    rc = main(
        [
            "classify",
            str(image_dir),
            "--server",
            target,
            "--codec",
            str(model_repo),
            "--target-bytes",
            "5",
            "--json",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["summary"]["codecs"] == ["tiny-codec/1", "tiny-codec/2"]
    assert all(r["face"]["codec_over_budget"] for r in doc["results"])


def test_unreachable_server_is_one_line_error(model_repo: Path, image_dir: Path, capsys) -> None:
    rc = main(
        [
            "classify",
            str(image_dir),
            "--server",
            f"127.0.0.1:{free_port()}",
            "--codec",
            str(model_repo / "tiny-codec" / "1"),
            "--retries",
            "0",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1
    assert err.startswith("fercomp: error [unavailable]: server 127.0.0.1:")


def test_user_errors(model_repo: Path, tmp_path: Path, capsys) -> None:
    assert main(["classify", str(tmp_path), "--server", "127.0.0.1:1"]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "nope.png"), "--server", "127.0.0.1:1"]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["classify", str(tmp_path), "--label", "bored", "--server", "x:1"]) == 2
    assert "unknown expression" in capsys.readouterr().err


def test_stream_video(live_server, model_repo: Path, tmp_path: Path, capsys) -> None:
    target, server = live_server
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(6):
        writer.write(np.full((64, 64, 3), 30 * i, np.uint8))
    writer.release()
    rc = main(
        [
            "stream",
            str(video),
            "--server",
            target,
            "--every",
            "2",
            "--detect-faces",
            "--codec",
            str(model_repo / "tiny-codec" / "1"),
            "--json",
        ]
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 0
    assert [x["frame"] for x in lines[:-1]] == [0, 2, 4]
    assert all(x["face"]["fallback"] for x in lines[:-1])  # flat frames: no face found
    assert lines[-1]["summary"]["bandwidth"]["faces"] == 3
    assert [r["stream_id"] for r in stored(server, 3)] == ["clip.avi"] * 3
    rc = main(
        [
            "stream",
            str(video),
            "--server",
            target,
            "--max-frames",
            "2",
            "--codec",
            str(model_repo / "tiny-codec" / "1"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "frame 1:" in out and "frame 2:" not in out and "faces: 2" in out
