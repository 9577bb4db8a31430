"""What faceage returns: frozen dataclasses with documented fields and units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Gender = Literal["male", "female"]


@dataclass(frozen=True)
class Face:
    """One face and what the model says about it.

    Attributes:
        age: estimated age in years, clipped to the model's age range.
        box: ``(x1, y1, x2, y2)`` in pixels of the original (EXIF-rotated) image.
        landmarks: five ``(x, y)`` pixel points: eye on the left of the picture, the
            other eye, nose tip, mouth corner on the left, the other mouth corner.
        detection_score: detector confidence in ``[0, 1]`` (1.0 when detection is off).
        age_std: expected error of ``age`` for this face in years (root-mean-square,
            from the same calibration as the interval); without a calibration, a
            model's own ``age_std`` output where it has one; else None.
        gender: ``"male"`` or ``"female"`` for models with a gender output, else None.
        gender_probability: probability of ``gender`` in ``[0.5, 1]``, else None.
        age_low, age_high: the face's age interval in years, ``age_low <= age <=
            age_high``, within the model's age range; None when the model has no
            interval calibration (see :mod:`faceage.intervals`).
        age_coverage: the share of faces whose true age such intervals hold, as
            measured on val (the estimator's ``age_coverage``); None without interval.
    """

    age: float
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    detection_score: float
    age_std: float | None = None
    gender: Gender | None = None
    gender_probability: float | None = None
    age_low: float | None = None
    age_high: float | None = None
    age_coverage: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists); the per-face fields of every
        output (``faceage batch`` and Ray rows add the box's corners and the image's)."""
        return {
            "age": self.age,
            "age_low": self.age_low,
            "age_high": self.age_high,
            "age_coverage": self.age_coverage,
            "age_std": self.age_std,
            "gender": self.gender,
            "gender_probability": self.gender_probability,
            "box": list(self.box),
            "landmarks": [list(p) for p in self.landmarks],
            "detection_score": self.detection_score,
        }


@dataclass(frozen=True)
class ImageResult:
    """The faces of one input image, or why it could not be read.

    Attributes:
        source: the path as given, or a short description of in-memory input.
        faces: the faces found, best detection score first (empty if none or on error).
        width, height: size of the decoded image in pixels (None on error).
        error: one readable line when the image could not be processed, else None.
        error_type: the exception class name behind ``error``.
    """

    source: str
    faces: tuple[Face, ...] = ()
    width: int | None = None
    height: int | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def face_rows(self) -> list[dict[str, Any]]:
        """Flat rows: one per face, or one face-less row for no face or an error.

        The layout shared by ``faceage batch`` and the Ray integration; missing values
        are None and ``face_index`` is None on a face-less row.
        """
        base: dict[str, Any] = {
            "path": self.source,
            "face_index": None,
            "age": None,
            "age_low": None,
            "age_high": None,
            "age_coverage": None,
            "age_std": None,
            "gender": None,
            "gender_probability": None,
            "x1": None,
            "y1": None,
            "x2": None,
            "y2": None,
            "detection_score": None,
            "landmarks": None,
            "width": self.width,
            "height": self.height,
            "error": self.error,
            "error_type": self.error_type,
        }
        rows = []
        for index, face in enumerate(self.faces):
            values = face.to_dict()
            x1, y1, x2, y2 = values.pop("box")
            rows.append(
                {**base, **values, "face_index": index, "x1": x1, "y1": y1, "x2": x2, "y2": y2}
            )
        return rows or [base]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "error": self.error,
            "error_type": self.error_type,
            "faces": [face.to_dict() for face in self.faces],
        }
