"""client.video: frame sampling and streaming a video file to the real server."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from client.results import Prediction
from client.sdk import FerClient
from client.video import VideoSource, stream_video
from core.face_codec import FaceCodec


def write_video(path: Path, n: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(n):
        writer.write(np.full((64, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


def test_frames_are_sampled_and_numbered(tmp_path: Path) -> None:
    with VideoSource(write_video(tmp_path / "v.avi", 7)) as video:
        assert video.fps == pytest.approx(10) and video.default_stream_id == "v.avi"
        assert [n for n, _ in video.frames(every=3)] == [0, 3, 6]
    with VideoSource(write_video(tmp_path / "w.avi", 7), fps=25) as video:
        assert video.fps == 25
        assert [n for n, _ in video.frames(every=2, max_frames=2)] == [0, 2]


def test_missing_video_and_bad_every_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such video"):
        VideoSource(tmp_path / "none.avi")
    with (
        VideoSource(write_video(tmp_path / "v.avi", 2)) as video,
        FerClient("localhost:1") as c,
        pytest.raises(ValueError, match="--every"),
    ):
        next(stream_video(c, video, every=0))


def test_stream_video_pairs_results_with_frame_numbers(
    live_server, tiny_codec: FaceCodec, tmp_path: Path
) -> None:
    target, _ = live_server
    with (
        VideoSource(write_video(tmp_path / "clip.avi", 5)) as video,
        FerClient(target, codec=tiny_codec) as client,
    ):
        out = list(stream_video(client, video, every=2))
    assert [n for n, _ in out] == [0, 2, 4]
    assert all(isinstance(r, Prediction) for _, r in out)
    assert [r.index for _, r in out] == [0, 1, 2]
