"""What every detector returns, and the geometry they share (resizing, NMS)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

import cv2
import numpy as np


@dataclass(frozen=True)
class Detection:
    """One face found by a detector, in pixel coordinates of the original image.

    Attributes:
        box: ``(x1, y1, x2, y2)``.
        landmarks: five ``(x, y)`` points: right eye, left eye (from the viewer: the
            eye on the left of the picture first), nose tip, mouth right, mouth left.
        score: detector confidence in ``[0, 1]``.
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


class FaceDetector(Protocol):
    """Anything with ``detect(image_bgr) -> list[Detection]`` (sorted by score, best first)."""

    name: str

    def detect(self, image: np.ndarray) -> list[Detection]: ...


class ScalingDetector(Protocol):
    """A detector that shrinks large images itself and so can be handed a photo decoded at
    a reduced scale (the built-in RetinaFace and YuNet): ``input_side`` is the longest
    side its network sees (None: it cannot take reduced images), and ``detect(image,
    reduction=r, original_size=(w, h))`` answers in the original's pixels."""

    name: str

    @property
    def input_side(self) -> int | None: ...

    def detect(
        self, image: np.ndarray, *, reduction: int = 1, original_size: tuple[int, int] | None = None
    ) -> list[Detection]: ...


def original_shape(
    shape: tuple[int, ...], original_size: tuple[int, int] | None
) -> tuple[int, ...]:
    """The ``(height, width)`` boxes are clipped to: the original's when the detector was
    given a reduced decode of it, else the image's own."""
    return shape if original_size is None else (original_size[1], original_size[0])


def fit_scale(height: int, width: int, max_side: int) -> float:
    """Scale that brings the longer side down to ``max_side`` (never up)."""
    longest = max(height, width)
    return min(1.0, max_side / longest) if longest > 0 else 1.0


#: The shortest box side, in the detector's input pixels, of a face RetinaFace finds
#: reliably: pasted UTKFace test faces were found 96% of the time at 40 px, 89% at 32
#: and 40% at 24 (99.7% at 64); guarded by tests/test_detection.py.
RELIABLE_FACE_SIZE: Final = 40.0
#: The input is never shrunk below this longer side (the network's coarsest stride).
_MIN_INPUT_SIDE: Final = 32


def detection_scale(
    height: int, width: int, *, max_side: int, min_face_size: float, reduction: int = 1
) -> float:
    """Scale from an image (decoded at ``1/reduction``) to the detector's input.

    The longer side is brought down to ``max_side`` (never up), and further down while a
    face of ``min_face_size`` full-resolution pixels, the smallest one kept, stays at
    least :data:`RELIABLE_FACE_SIZE` pixels in the input: detecting at more pixels than
    that only finds faces that are then dropped. At the default ``min_face_size`` (16)
    this never shrinks further than ``max_side`` does.
    """
    scale = fit_scale(height, width, max_side)
    if min_face_size <= 0:
        return scale
    longest = max(height, width, 1)
    needed = max(RELIABLE_FACE_SIZE * reduction / min_face_size, _MIN_INPUT_SIDE / longest)
    return min(scale, needed)


def resize_for_detector(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def pad_to_multiple(image: np.ndarray, multiple: int, *, min_side: int = 0) -> np.ndarray:
    """Zero-pad ``image`` on the bottom and right so both sides divide by ``multiple``."""
    height, width = image.shape[:2]
    new_h = max(min_side, -(-height // multiple) * multiple)
    new_w = max(min_side, -(-width // multiple) * multiple)
    if (new_h, new_w) == (height, width):
        return image
    padded = np.zeros((new_h, new_w, *image.shape[2:]), dtype=image.dtype)
    padded[:height, :width] = image
    return padded


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        inter_w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        inter_h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = inter_w * inter_h
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def to_detections(
    boxes: np.ndarray,
    landmarks: np.ndarray,
    scores: np.ndarray,
    *,
    scale: float,
    image_shape: tuple[int, ...],
    score_threshold: float,
    nms_threshold: float,
    min_face_size: float,
) -> list[Detection]:
    """Threshold, suppress, rescale to the original image and wrap as :class:`Detection`.

    ``boxes`` are ``(N, 4)`` corner boxes and ``landmarks`` ``(N, 5, 2)`` points in the
    detector's input frame; ``scale`` is the factor the image was resized by.
    """
    mask = scores >= score_threshold
    boxes, landmarks, scores = boxes[mask], landmarks[mask], scores[mask]
    if scores.size == 0:
        return []
    keep = nms(boxes, scores, nms_threshold)
    boxes, landmarks, scores = boxes[keep] / scale, landmarks[keep] / scale, scores[keep]
    height, width = image_shape[:2]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    found = []
    for box, points, score in zip(boxes, landmarks, scores):
        if min(box[2] - box[0], box[3] - box[1]) < min_face_size:
            continue
        found.append(
            Detection(
                box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                landmarks=tuple((float(x), float(y)) for x, y in points),
                score=float(score),
            )
        )
    return found
