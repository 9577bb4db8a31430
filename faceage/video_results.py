"""What faceage returns for video: frozen dataclasses with documented fields and units.

A :class:`TrackedFace` carries the frame's own :class:`~faceage.results.Face` whole, so
every field a ``Face`` has (intervals included) is there for video too, next to the
track's id and its smoothed estimates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from faceage.results import Face, Gender


@dataclass(frozen=True)
class TrackedFace:
    """One face of one frame, linked to its track.

    Attributes:
        track_id: the person's id, from 1; never reused within one run.
        face: what the model says about this frame alone (``face.age``, ``face.box``...).
        age_smoothed: the track's running age in years, this frame included.
        age_spread: weighted standard deviation (years) of the frame ages behind it.
        gender_smoothed: ``"male"`` / ``"female"`` from the running P(female), or None
            for models without gender.
        gender_probability_smoothed: probability of ``gender_smoothed`` in ``[0.5, 1]``.
        frames_seen: frames of this track with a face so far, this one included.
    """

    track_id: int
    face: Face
    age_smoothed: float
    age_spread: float
    gender_smoothed: Gender | None
    gender_probability_smoothed: float | None
    frames_seen: int

    @property
    def age(self) -> float:
        """This frame's own age (years)."""
        return self.face.age

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.face.box

    @property
    def landmarks(self) -> tuple[tuple[float, float], ...]:
        return self.face.landmarks

    @property
    def detection_score(self) -> float:
        return self.face.detection_score

    @property
    def gender(self) -> Gender | None:
        """This frame's own gender."""
        return self.face.gender

    @property
    def gender_probability(self) -> float | None:
        return self.face.gender_probability

    def to_dict(self) -> dict[str, Any]:
        """``track_id``, the face's own ``to_dict()`` fields, then the smoothed ones."""
        return {
            "track_id": self.track_id,
            **self.face.to_dict(),
            "age_smoothed": self.age_smoothed,
            "age_spread": self.age_spread,
            "gender_smoothed": self.gender_smoothed,
            "gender_probability_smoothed": self.gender_probability_smoothed,
            "frames_seen": self.frames_seen,
        }


@dataclass(frozen=True)
class FrameResult:
    """The faces of one scored frame, or why it could not be scored.

    Attributes:
        index: the frame's position in the source, from 0 (skipped frames count).
        time: seconds from the start of the video (None where the frame rate is unknown).
        faces: the frame's faces, best detection score first.
        width, height: frame size in pixels (None on error).
        error: one readable line when the frame could not be scored, else None.
        error_type: the exception class name behind ``error``.
    """

    index: int
    time: float | None
    faces: tuple[TrackedFace, ...] = ()
    width: int | None = None
    height: int | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "time": self.time,
            "width": self.width,
            "height": self.height,
            "error": self.error,
            "error_type": self.error_type,
            "faces": [face.to_dict() for face in self.faces],
        }


@dataclass(frozen=True)
class TrackSummary:
    """One person over a whole run.

    Attributes:
        track_id: the track's id.
        first_frame, last_frame: indexes of the first and last frames it was seen in.
        first_time, last_time: their times in seconds (None where unknown).
        frames_seen: frames in which it had a face.
        age_smoothed: its running age at its last frame (years).
        age_spread: weighted standard deviation of the frame ages behind it (years).
        gender, gender_probability: from its running P(female); None without gender.
    """

    track_id: int
    first_frame: int
    last_frame: int
    first_time: float | None
    last_time: float | None
    frames_seen: int
    age_smoothed: float
    age_spread: float
    gender: Gender | None
    gender_probability: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
