"""Frames from a video file, a camera or an iterable of images, with typed errors and an
honest count of what was read.

A file is opened eagerly and its first frame decoded at once, so a missing file, a file
that is not a video and a codec OpenCV cannot decode each raise one typed error before
any work starts. A file that stops before the frame count its header promises (a copy
cut short) is read to its last decodable frame and reported as ended early: nothing that
could be read is lost, and nobody mistakes the rest for the whole video.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np

from faceage.errors import CameraError, VideoDecodeError, VideoNotFoundError

logger = logging.getLogger(__name__)

#: What :func:`open_video` takes: a file path, a camera index, or frames (BGR arrays).
VideoInput = Union[str, "os.PathLike[str]", int, Iterable[Any]]


@dataclass(frozen=True)
class VideoFrame:
    """One frame as read.

    Attributes:
        index: position in the source, from 0, counting every frame (skipped ones too).
        time: seconds from the start (``index / fps`` for files and iterables with a
            frame rate, wall-clock seconds since opening for cameras), else None.
        image: the pixels (an ``HxWx3`` uint8 BGR array for files and cameras; what the
            iterable gave otherwise), or None when the frame could not be decoded.
        process: whether this frame is one of the ``every``-th frames to be scored.
        error: why ``image`` is None, else None.
    """

    index: int
    time: float | None
    image: Any
    process: bool = True
    error: str | None = None


class VideoSource:
    """Frames of one source; see :func:`open_video`. Close it (or use ``with``) when done.

    Attributes:
        name: the path, ``"camera N"`` or ``"frames"``.
        fps: frames per second, where known.
        frames_expected: the frame count a file's header gives, else None.
        frames_read: frames read so far (decoded or skipped).
        finished: the source was read to its end.
        width, height: frame size in pixels, where known.
        is_camera: frames come from a live camera.
    """

    name: str = "frames"
    fps: float | None = None
    frames_expected: int | None = None
    frames_read: int = 0
    width: int | None = None
    height: int | None = None
    is_camera: bool = False
    finished: bool = False

    def frames(self, *, every: int = 1, decode_all: bool = False) -> Iterator[VideoFrame]:
        """Every ``every``-th frame (``process=True``), plus the frames between them when
        ``decode_all`` (``process=False``; needed to write a whole annotated video)."""
        raise NotImplementedError

    @property
    def ended_early(self) -> bool:
        """The file ended (was read to its end) before the frame count its header gives:
        a truncated copy. False while it is still being read, or if reading stopped."""
        return (
            self.finished
            and self.frames_expected is not None
            and self.frames_read < self.frames_expected
        )

    def close(self) -> None:
        """Release the file or camera (safe to call twice)."""

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CaptureSource(VideoSource):
    """A video file or camera read through ``cv2.VideoCapture``."""

    def __init__(self, capture: Any, first: np.ndarray, *, name: str, is_camera: bool) -> None:
        self._capture = capture
        self._first: np.ndarray | None = first
        self.name = name
        self.is_camera = is_camera
        self.height, self.width = int(first.shape[0]), int(first.shape[1])
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if math.isfinite(fps) and 0.0 < fps < 1000.0 else None
        count = float(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        self.frames_expected = None if is_camera or not count > 0 else round(count)
        self.frames_read = 1  # the first frame, decoded by open_video
        self._started = time.monotonic()

    def _time(self, index: int) -> float | None:
        if self.is_camera:
            return time.monotonic() - self._started
        return index / self.fps if self.fps else None

    def frames(self, *, every: int = 1, decode_all: bool = False) -> Iterator[VideoFrame]:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if self._first is None:
            raise RuntimeError(f"{self.name}: frames() can be iterated only once")
        first, self._first = self._first, None
        yield VideoFrame(0, 0.0 if self.fps or self.is_camera else None, first)
        index = 1
        while self._capture is not None and self._capture.grab():
            self.frames_read += 1
            process = index % every == 0
            if process or decode_all:
                ok, image = self._capture.retrieve()
                stamp = self._time(index)
                if ok and image is not None:
                    yield VideoFrame(index, stamp, image, process)
                else:
                    yield VideoFrame(
                        index, stamp, None, process, f"frame {index}: OpenCV could not decode it"
                    )
            index += 1
        self.finished = self._capture is not None
        if self.ended_early:
            logger.warning(
                "%s ended early: %d of the %d frames its header gives were read",
                self.name,
                self.frames_read,
                self.frames_expected,
            )

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class IterableSource(VideoSource):
    """Frames a caller already holds: any iterable of images."""

    def __init__(self, frames: Iterable[Any], *, fps: float | None = None) -> None:
        self._frames: Iterable[Any] | None = frames
        self.fps = fps

    def frames(self, *, every: int = 1, decode_all: bool = False) -> Iterator[VideoFrame]:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if self._frames is None:
            raise RuntimeError("frames() can be iterated only once")
        frames, self._frames = self._frames, None
        for index, image in enumerate(frames):
            self.frames_read = index + 1
            process = index % every == 0
            if process or decode_all:
                stamp = index / self.fps if self.fps else None
                yield VideoFrame(index, stamp, image, process)
        self.finished = True


def open_video(source: VideoInput, *, fps: float | None = None) -> VideoSource:
    """Open a video file, a camera (``int`` index) or an iterable of frames.

    Args:
        source: a path, a camera index, or frames (numpy BGR arrays, or anything
            :func:`faceage.images.load_image` reads).
        fps: frames per second; needed for times of an iterable's frames, and overrides
            what a file's header says.

    Raises:
        VideoNotFoundError: the path does not exist or is not a file.
        VideoDecodeError: the file is not a video, or OpenCV has no decoder for its codec
            or cannot decode its first frame.
        CameraError: the camera cannot be opened or gives no frame.
    """
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if isinstance(source, bool):
        raise TypeError("a video source is a path, a camera index or an iterable of frames")
    if isinstance(source, int):
        opened = _open_camera(source)
    elif isinstance(source, (str, os.PathLike)):
        opened = _open_file(Path(os.fsdecode(source)))
    elif isinstance(source, (bytes, bytearray, memoryview, np.ndarray)):
        raise TypeError(
            "pass a video as a file path; for frames in memory pass an iterable of arrays "
            "(a list, or a generator), not one array or bytes"
        )
    elif isinstance(source, Iterable):
        return IterableSource(source, fps=fps)
    else:
        raise TypeError(
            f"cannot read video from {type(source).__name__}; pass a file path, a camera "
            "index or an iterable of frames"
        )
    if fps is not None:
        opened.fps = fps
    return opened


def _open_file(path: Path) -> CaptureSource:
    if not path.exists():
        raise VideoNotFoundError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise VideoNotFoundError(f"{path}: is not a file; pass a video file")
    backend = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    capture = cv2.VideoCapture(str(path), backend)
    if not capture.isOpened():
        capture.release()
        raise VideoDecodeError(
            f"{path}: OpenCV cannot open it as a video (not a video, a codec its FFmpeg "
            "lacks, or a file cut short: an MP4 copied only in part has no index); "
            "re-encode it as H.264 MP4 or MJPG AVI, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
        )
    ok, first = capture.read()
    if not ok or first is None:
        codec = _fourcc_text(capture.get(cv2.CAP_PROP_FOURCC))
        capture.release()
        raise VideoDecodeError(
            f"{path}: OpenCV opened it but could not decode a frame (codec {codec!r}); "
            "re-encode it as H.264 MP4 or MJPG AVI, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4"
        )
    return CaptureSource(capture, first, name=str(path), is_camera=False)


def _open_camera(index: int) -> CaptureSource:
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise CameraError(
            f"camera {index} cannot be opened; check that it is connected, not in use by "
            "another program, and that this user may read it (e.g. the video group)"
        )
    ok, first = capture.read()
    if not ok or first is None:
        capture.release()
        raise CameraError(f"camera {index} opened but gave no frame; try another index")
    return CaptureSource(capture, first, name=f"camera {index}", is_camera=True)


def _fourcc_text(value: float) -> str:
    code = int(value) if math.isfinite(value) else 0
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip("\x00") else "unknown"
