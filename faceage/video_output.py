"""What ``faceage video`` writes: a row per face per scored frame (CSV or JSON lines), a
row per track, and an annotated video, each complete up to its last row however the
run ends.

Rows are written and flushed frame by frame, so a run cut short by Ctrl-C, the end of a
camera session or a crash leaves a file that pandas reads as is. The per-face columns
come from :class:`~faceage.results.Face` itself (its fields, with ``box`` as ``x1, y1,
x2, y2``), so a field added to ``Face`` (an age interval, say) becomes a column here
without a change to this module. A frame that cannot be scored gets an error row; a
file that ends before its header's frame count gets a last row saying so.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

from faceage.batch import OutputFormat, output_format
from faceage.results import Face
from faceage.video_results import FrameResult, TrackedFace, TrackSummary

if TYPE_CHECKING:
    from faceage.progress import ProgressBar
    from faceage.video import FrameEstimator, VideoRun
    from faceage.video_io import VideoInput

logger = logging.getLogger(__name__)

#: ``error_type`` of the last row of a file that ended before its header's frame count.
ENDED_EARLY: Final = "VideoEndedEarly"
#: Columns before and after the face's own (guarded by tests/test_video.py).
LEAD_COLUMNS: Final = ("frame", "time", "track_id", "age", "age_smoothed")
TRAIL_COLUMNS: Final = (
    "gender_smoothed",
    "gender_probability_smoothed",
    "age_spread",
    "frames_seen",
    "model",
    "error",
    "error_type",
)
SUMMARY_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(TrackSummary))
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


def face_columns() -> tuple[str, ...]:
    """The columns of a :class:`Face` besides ``age``, in field order, ``box`` as x1..y2."""
    names: list[str] = []
    for item in dataclasses.fields(Face):
        if item.name == "box":
            names += ["x1", "y1", "x2", "y2"]
        elif item.name != "age":
            names.append(item.name)
    return tuple(names)


def output_columns() -> tuple[str, ...]:
    """Every column of ``faceage video --out``, in file order."""
    return LEAD_COLUMNS + face_columns() + TRAIL_COLUMNS


def _value(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return round(value, digits) if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_value(v, 2) for v in value]
    return value


def face_row(frame: FrameResult, tracked: TrackedFace, *, model: str) -> dict[str, Any]:
    """The output row of one face of one frame."""
    face = tracked.face.to_dict()
    box = face.pop("box", None) or [None] * 4
    face.update(zip(("x1", "y1", "x2", "y2"), box))
    row: dict[str, Any] = dict.fromkeys(output_columns())
    row.update({k: v for k, v in face.items() if k in row})
    row.update(
        frame=frame.index,
        time=frame.time,
        track_id=tracked.track_id,
        age_smoothed=tracked.age_smoothed,
        gender_smoothed=tracked.gender_smoothed,
        gender_probability_smoothed=tracked.gender_probability_smoothed,
        age_spread=tracked.age_spread,
        frames_seen=tracked.frames_seen,
        model=model,
    )
    return {k: _value(v, 2 if k in ("x1", "y1", "x2", "y2") else 4) for k, v in row.items()}


def error_row(
    index: int, time_s: float | None, error: str, error_type: str, *, model: str
) -> dict[str, Any]:
    """A face-less row that says why frame ``index`` has no faces."""
    row: dict[str, Any] = dict.fromkeys(output_columns())
    row.update(
        frame=index,
        time=_value(time_s),
        model=model,
        error=" ".join(error.split()),
        error_type=error_type,
    )
    return row


def frame_rows(result: FrameResult, *, model: str) -> list[dict[str, Any]]:
    """The rows of one scored frame: one per face, one error row, or none (no face)."""
    if not result.ok:
        return [
            error_row(
                result.index,
                result.time,
                result.error or "",
                result.error_type or "Error",
                model=model,
            )
        ]
    return [face_row(result, face, model=model) for face in result.faces]


class RowFile:
    """A CSV or JSON-lines file written a frame at a time: header first, whole lines
    only, flushed after every write."""

    def __init__(self, path: Path, columns: Sequence[str], fmt: OutputFormat) -> None:
        self.path, self.columns, self.format = path, tuple(columns), fmt
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = path.open("w", encoding="utf-8", newline="")
        if fmt == "csv":
            self._handle.write(",".join(self.columns) + "\n")
            self._handle.flush()

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        if not rows or self._handle is None:
            return
        if self.format == "jsonl":
            text = "".join(
                json.dumps({k: row.get(k) for k in self.columns}, ensure_ascii=False) + "\n"
                for row in rows
            )
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            for row in rows:
                writer.writerow([_csv_cell(row.get(k)) for k in self.columns])
            text = buffer.getvalue()
        self._handle.write(text)
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"))
    return value


def write_summary(path: Path, tracks: Sequence[TrackSummary]) -> None:
    """One row per track (:data:`SUMMARY_COLUMNS`), written beside ``path`` then renamed
    onto it, so the file is whole or absent."""
    rows = [{k: _value(v) for k, v in track.to_dict().items()} for track in tracks]
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    sink = RowFile(temporary, SUMMARY_COLUMNS, output_format(path))
    try:
        sink.write(rows)
    finally:
        sink.close()
    os.replace(temporary, path)


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
                str(self.path), fourcc, self.fps or 25.0, (width, height)
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
