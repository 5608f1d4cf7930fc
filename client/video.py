"""Classify a video file or a camera through a FerClient stream, frame numbers attached.

OpenCV reads the frames; every ``every``-th frame is sent (up to ``max_frames``), and each
result comes back paired with the number of the frame it belongs to.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from client.results import ItemErrorResult, Prediction
from client.sdk import FerClient


class VideoSource:
    """An opened video file or camera (``int``); use as a context manager to release it."""

    def __init__(self, source: str | Path | int, fps: float | None = None) -> None:
        import cv2  # only the video path needs OpenCV's video I/O

        if not isinstance(source, int) and not Path(source).is_file():
            raise FileNotFoundError(2, "no such video", str(source))
        self.source = source
        self._cap = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        if not self._cap.isOpened():
            raise OSError(f"cannot open video source {source}")
        #: Frames per second: the caller's, else the container's, else None (unknown).
        self.fps: float | None = fps or (float(self._cap.get(cv2.CAP_PROP_FPS)) or None)

    @property
    def default_stream_id(self) -> str:
        return f"camera{self.source}" if isinstance(self.source, int) else Path(self.source).name

    def frames(self, every: int = 1, max_frames: int | None = None) -> Iterator[tuple[int, Any]]:
        """(frame number, BGR frame) for every ``every``-th frame, at most ``max_frames``."""
        if every < 1:
            raise ValueError("--every must be >= 1")
        n = sent = 0
        while True:
            ok, frame = self._cap.read()
            if not ok:
                return
            if n % every == 0:
                yield n, frame
                sent += 1
                if max_frames is not None and sent >= max_frames:
                    return
            n += 1

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream_video(
    client: FerClient,
    video: VideoSource,
    *,
    every: int = 1,
    max_frames: int | None = None,
    stream_id: str | None = None,
    detect_faces: bool = False,
    target_bytes: int | None = None,
    budget_bps: float | None = None,
) -> Iterator[tuple[int, Prediction | ItemErrorResult]]:
    """(frame number, result) for each sent frame, in order, over one ClassifyStream."""
    if every < 1:
        raise ValueError("--every must be >= 1")
    send_fps = video.fps / every if video.fps else None
    if budget_bps is not None and send_fps is None:
        raise ValueError("--budget-bps needs the frame rate: this video has none, pass --fps")
    numbers: deque[int] = deque()

    def frames() -> Iterator[Any]:
        for n, frame in video.frames(every, max_frames):
            numbers.append(n)  # before yield: the result cannot overtake it
            yield frame

    for res in client.stream(
        frames(),
        stream_id=stream_id or video.default_stream_id,
        detect_faces=detect_faces,
        target_bytes=target_bytes,
        budget_bps=budget_bps,
        fps=send_fps,
    ):
        yield (numbers.popleft() if numbers else -1), res
