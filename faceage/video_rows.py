"""The rows ``faceage video`` writes: one per face per scored frame (CSV or JSON lines)
and one per track, each file whole up to its last line however the run ends.

Rows are written and flushed frame by frame, so a run cut short by Ctrl-C, the end of a
camera session or a crash leaves a file that pandas reads as is. The per-face columns
come from :class:`~faceage.results.Face` itself (its fields, with ``box`` as ``x1, y1,
x2, y2``), so a field added to ``Face`` (an age interval, say) becomes a column here
without a change to this module.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Final

from faceage.batch import OutputFormat, csv_cell, output_format
from faceage.results import Face
from faceage.video_results import FrameResult, TrackedFace, TrackSummary

#: ``error_type`` of the last row of a file that ended before its header's frame count.
ENDED_EARLY: Final = "VideoEndedEarly"
#: Columns before and after the face's own (guarded by tests/test_tracking.py).
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
                writer.writerow([csv_cell(row.get(k)) for k in self.columns])
            text = buffer.getvalue()
        self._handle.write(text)
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


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
