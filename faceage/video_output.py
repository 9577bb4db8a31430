"""``faceage video``: score a video into rows, a row per track and an annotated video.

:func:`score_video` is the command's work, kept out of :mod:`faceage.cli` as
:mod:`faceage.batch` is for ``faceage batch``: it checks the outputs before a model
loads, streams :meth:`AgeEstimator.predict_video` into the files of
:mod:`faceage.video_rows`, and closes every file whole when the run ends, is cut short
by Ctrl-C (how a camera run ends) or fails. A frame that cannot be scored gets an error
row; a file that ends before its header's frame count gets a last row saying so.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from faceage.batch import output_format
from faceage.video_results import FrameResult, TrackedFace
from faceage.video_rows import (
    ENDED_EARLY,
    RowFile,
    error_row,
    frame_rows,
    output_columns,
    write_summary,
)

if TYPE_CHECKING:
    from faceage.progress import ProgressBar
    from faceage.video import FrameEstimator, VideoRun
    from faceage.video_io import VideoInput

logger = logging.getLogger(__name__)

#: Frame rate of an annotated video whose source does not say its own (a camera may not).
DRAW_FPS_UNKNOWN: Final = 30.0
#: Writers for annotated video, by suffix: ``mp4v`` for MP4, ``MJPG`` for AVI.
DRAW_CODECS: Final = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
# Box colours of tracks (BGR), by track id.
_TRACK_COLORS: Final = (
    (230, 140, 40),
    (60, 200, 60),
    (180, 60, 230),
    (40, 180, 230),
    (230, 60, 60),
    (200, 200, 40),
    (120, 90, 250),
    (60, 140, 140),
)


def track_label(face: TrackedFace) -> str:
    """``"#3 age 34 F"``: the track id, its smoothed age and gender."""
    label = f"#{face.track_id} age {round(face.age_smoothed)}"
    if face.gender_smoothed is not None:
        label += " F" if face.gender_smoothed == "female" else " M"
    return label


class AnnotatedVideo:
    """Writes every frame with its latest scored faces drawn: box, id, smoothed age.

    Frames between scored ones (``--every N``) show the last scored frame's boxes.
    """

    def __init__(self, path: Path, *, fps: float | None = None) -> None:
        self.path = path
        self.fps = fps
        self.frames = 0
        self._writer: Any = None
        self._codec = DRAW_CODECS[path.suffix.lower()]

    def __call__(self, index: int, image: Any, result: FrameResult | None) -> None:
        import cv2

        from faceage.draw import draw_faces

        if self._writer is None:
            height, width = image.shape[:2]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter.fourcc(*self._codec)
            self._writer = cv2.VideoWriter(
                str(self.path), fourcc, self.fps or DRAW_FPS_UNKNOWN, (width, height)
            )
            if not self._writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write {self._codec} video here")
        faces = result.faces if result is not None else ()
        canvas = draw_faces(
            image,
            [f.face for f in faces],
            labels=[track_label(f) for f in faces],
            colors=[_TRACK_COLORS[(f.track_id - 1) % len(_TRACK_COLORS)] for f in faces],
        )
        self._writer.write(canvas)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()  # writes the MP4 index: the file is playable from here
            self._writer = None


@dataclass(frozen=True)
class VideoSummary:
    """What one :func:`score_video` run did.

    Attributes:
        source: the file path or ``camera N``.
        out: the rows file.
        frames_read: frames read (skipped ones included).
        frames_expected: the frame count of a file's header (None for a camera).
        frames_scored: frames scored (every ``every``-th).
        faces: face rows written.
        tracks: tracks (people) found.
        errors: frames that could not be scored (each has an error row).
        ended_early: the file ended before its header's frame count.
        interrupted: the run was stopped by Ctrl-C (the files hold all rows up to then).
        drawn: frames written to the annotated video.
        seconds: wall time.
    """

    source: str
    out: str
    frames_read: int
    frames_expected: int | None
    frames_scored: int
    faces: int
    tracks: int
    errors: int
    ended_early: bool
    interrupted: bool
    drawn: int
    seconds: float

    @property
    def frames_per_second(self) -> float:
        """Frames read per second of wall time (what real time is measured against)."""
        return self.frames_read / self.seconds if self.seconds > 0 else 0.0


def check_outputs(
    source: VideoInput,
    out: str | os.PathLike[str],
    *,
    summary: str | os.PathLike[str] | None = None,
    draw: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> None:
    """Refuse outputs that cannot work, before a model loads.

    Raises:
        ValueError: an unknown suffix, or two outputs (or an output and the input) that
            are one file.
        FileExistsError: an output exists and ``overwrite`` is not set.
        IsADirectoryError: an output is a directory.
    """
    output_format(out)
    if summary is not None:
        output_format(summary)
    if draw is not None and Path(os.fsdecode(draw)).suffix.lower() not in DRAW_CODECS:
        raise ValueError(
            f"cannot write annotated video to {os.fsdecode(draw)!r}; name it *.mp4 or *.avi"
        )
    paths = [Path(os.fsdecode(p)) for p in (out, summary, draw) if p is not None]
    seen = {}
    if isinstance(source, (str, os.PathLike)):
        seen[os.path.realpath(os.fsdecode(source))] = "the input video"
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            raise ValueError(f"{path}: is also {seen[real]}; choose another file name")
        seen[real] = "another output"
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a directory; name a file")
        if path.exists() and path.stat().st_size > 0 and not overwrite:
            raise FileExistsError(
                f"{path}: already exists; pass overwrite=True (--overwrite) to replace it"
            )


def score_video(
    estimator: FrameEstimator,
    source: VideoInput,
    out: str | os.PathLike[str],
    *,
    summary: str | os.PathLike[str] | None = None,
    draw: str | os.PathLike[str] | None = None,
    every: int = 1,
    smoothing: bool = True,
    overwrite: bool = False,
    progress: ProgressBar | None = None,
) -> VideoSummary:
    """Track and age the people of ``source`` into ``out`` (and ``summary``, ``draw``).

    Ctrl-C (KeyboardInterrupt) ends the run like the end of the video: every file is
    closed whole and the returned summary has ``interrupted=True``; that is how a camera
    run ends.

    Raises:
        VideoNotFoundError, VideoDecodeError, CameraError: ``source`` cannot be read.
        ValueError, FileExistsError: see :func:`check_outputs`.
    """
    from faceage.video import predict_video

    started = time.perf_counter()
    check_outputs(source, out, summary=summary, draw=draw, overwrite=overwrite)
    out_path = Path(os.fsdecode(out))
    annotator = None if draw is None else AnnotatedVideo(Path(os.fsdecode(draw)))
    run: VideoRun = predict_video(
        estimator, source, every=every, smoothing=smoothing, on_frame=annotator
    )
    if annotator is not None:
        annotator.fps = run.source.fps
    model = str(getattr(getattr(estimator, "spec", None), "name", ""))
    sink = RowFile(out_path, output_columns(), output_format(out_path))
    scored = faces = errors = 0
    interrupted = False
    try:
        if progress is not None:
            progress(0, run.frames_expected)
        for result in run:
            rows = frame_rows(result, model=model)
            sink.write(rows)
            scored += 1
            faces += len(result.faces)
            errors += 0 if result.ok else 1
            if progress is not None:
                progress(run.frames_read, run.frames_expected)
    except KeyboardInterrupt:
        interrupted = True
        logger.info("interrupted after %d frames; closing the outputs", run.frames_read)
    finally:
        run.close()
        if annotator is not None:
            annotator.close()
        if run.ended_early and not interrupted:
            sink.write(
                [
                    error_row(
                        run.frames_read,
                        None,
                        f"the video ended early: {run.frames_read} of the "
                        f"{run.frames_expected} frames its header gives were read (a copy "
                        "cut short?); every readable frame was scored",
                        ENDED_EARLY,
                        model=model,
                    )
                ]
            )
        sink.close()
        if summary is not None:
            write_summary(Path(os.fsdecode(summary)), run.tracks())
        if progress is not None:
            progress(run.frames_read, run.frames_expected, final=True)
    return VideoSummary(
        source=run.source.name,
        out=str(out_path),
        frames_read=run.frames_read,
        frames_expected=run.frames_expected,
        frames_scored=scored,
        faces=faces,
        tracks=len(run.tracks()),
        errors=errors,
        ended_early=run.ended_early and not interrupted,
        interrupted=interrupted,
        drawn=0 if annotator is None else annotator.frames,
        seconds=time.perf_counter() - started,
    )
