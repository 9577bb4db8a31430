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
        age_std: spread of the age estimate in years, for models that give one.
        gender: ``"male"`` or ``"female"`` for models with a gender output, else None.
        gender_probability: probability of ``gender`` in ``[0.5, 1]``, else None.
    """

    age: float
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    detection_score: float
    age_std: float | None = None
    gender: Gender | None = None
    gender_probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return {
            "age": self.age,
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
            x1, y1, x2, y2 = face.box
            rows.append(
                {
                    **base,
                    "face_index": index,
                    "age": face.age,
                    "age_std": face.age_std,
                    "gender": face.gender,
                    "gender_probability": face.gender_probability,
                    "x1": x1,
                    "y1": y1,
                    "x2": x2,
                    "y2": y2,
                    "detection_score": face.detection_score,
                    "landmarks": [list(p) for p in face.landmarks],
                }
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
