"""Face alignment and context crops: the geometry shared by inference and training.

A face is aligned by the similarity transform (rotation, uniform scale, shift; no
shear, no mirror) that best maps its five detected landmarks onto one canonical
template. ``scale`` zooms out around the template's centre: at ``scale=1.0`` the crop
runs from the forehead to the chin, at ``1.25`` it also holds hair and jaw line, at
``0.8`` only the inner face. Multi-crop models (C3AE, 3-resolution HSR nets) take the
same face at several scales.

Pixels outside the source image are filled with black (``BORDER_CONSTANT``, 0), in
training and at inference alike.

``training/`` imports these functions, so a model is trained on exactly the crops it
sees at inference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

#: Canonical 5-point template for ``scale=1.0`` in units of the crop side: the eye on
#: the left of the picture, the other eye, nose tip, mouth corner on the left, the
#: other mouth corner. Chosen for age: eyes at 30% of the height and 40% of the width
#: apart leave the forehead in the crop (a left-right symmetric, rounded version of
#: where RetinaFace puts the landmarks on UTKFace's own face chips).
CANONICAL_LANDMARKS = np.array(
    [[0.30, 0.30], [0.70, 0.30], [0.50, 0.52], [0.33, 0.68], [0.67, 0.68]], dtype=np.float64
)
#: The point ``scale`` zooms around, in units of the crop side.
TEMPLATE_CENTER = np.array([0.5, 0.5], dtype=np.float64)
#: Value of pixels that fall outside the source image.
BORDER_VALUE = (0, 0, 0)

# Warp to at most this many times the output size, then area-downsample, so a large
# face shrunk to 64 px is averaged rather than aliased.
_MAX_SUPERSAMPLE = 8


def template_landmarks(size: float, scale: float = 1.0) -> np.ndarray:
    """The canonical landmarks, in pixels, of a ``size`` x ``size`` crop at ``scale``."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return (TEMPLATE_CENTER + (CANONICAL_LANDMARKS - TEMPLATE_CENTER) / scale) * size


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2x3) mapping points ``src`` onto ``dst``.

    Umeyama's solution restricted to a proper rotation (no reflection), which in 2-D has
    a closed form: the linear part is ``[[a, -b], [b, a]]`` with ``a`` and ``b`` the
    centred points' dot and cross products over the source variance (no SVD needed;
    the same matrix to float rounding, guarded by tests/test_alignment.py).
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"need two matching sets of >= 2 points, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = float((src_c**2).sum())
    if src_var < 1e-12 * len(src):
        raise ValueError("the source landmarks coincide; cannot align a face of zero size")
    dot = float((src_c * dst_c).sum())
    cross = float((src_c[:, 0] * dst_c[:, 1] - src_c[:, 1] * dst_c[:, 0]).sum())
    a, b = dot / src_var, cross / src_var
    matrix = np.array([[a, -b, 0.0], [b, a, 0.0]])
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def alignment_matrix(
    landmarks: np.ndarray | Sequence[Sequence[float]], *, size: int, scale: float = 1.0
) -> np.ndarray:
    """The 2x3 matrix taking image pixels to an aligned ``size`` x ``size`` crop."""
    return similarity_transform(
        np.asarray(landmarks, dtype=np.float64), template_landmarks(size, scale)
    )


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Apply a 2x3 image->crop matrix, supersampling when the crop shrinks the face."""
    zoom = linear_zoom(matrix)
    factor = int(min(_MAX_SUPERSAMPLE, max(1, np.floor(1.0 / max(zoom, 1e-6)))))
    big = matrix * factor
    crop = cv2.warpAffine(
        image,
        big,
        (size * factor, size * factor),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BORDER_VALUE,
    )
    if factor > 1:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return crop


def linear_zoom(matrix: np.ndarray) -> float:
    """Crop pixels per image pixel (along each side) of a 2x3 similarity matrix."""
    return math.sqrt(abs(matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0]))


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray | Sequence[Sequence[float]],
    *,
    size: int,
    scale: float = 1.0,
) -> np.ndarray:
    """One aligned ``size`` x ``size`` crop of the face with these five landmarks.

    Args:
        image: ``HxWxC`` uint8 image (BGR for everything in faceage).
        landmarks: ``(5, 2)`` pixel coordinates in the order of :data:`CANONICAL_LANDMARKS`.
        size: side of the square output in pixels.
        scale: context around the face; larger shows more (see module docstring).
    """
    return warp_crop(image, alignment_matrix(landmarks, size=size, scale=scale), size)


def context_crops(
    image: np.ndarray,
    landmarks: np.ndarray | Sequence[Sequence[float]],
    *,
    size: int,
    scales: Sequence[float],
) -> np.ndarray:
    """The same face at each of ``scales``: an array ``(len(scales), size, size, C)``."""
    if not scales:
        raise ValueError("scales must name at least one crop scale")
    base = alignment_matrix(landmarks, size=size)
    return np.stack([warp_crop(image, rescale_alignment(base, size, s), size) for s in scales])


def rescale_alignment(matrix: np.ndarray, size: int, scale: float) -> np.ndarray:
    """The ``scale`` crop's matrix from the ``scale=1`` one: the template only zooms about
    its centre, so the least-squares fit zooms the same way (one SVD for all crops)."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if scale == 1.0:
        return matrix
    center = TEMPLATE_CENTER * size
    out = np.empty_like(matrix)
    out[:, :2] = matrix[:, :2] / scale
    out[:, 2] = center + (matrix[:, 2] - center) / scale
    return out


def crop_landmarks(width: int, height: int, size: int | None = None) -> np.ndarray:
    """Landmarks to assume for an image that is already an aligned face crop.

    The image is taken to be a ``scale=1.0`` crop (as :func:`align_face` makes them)
    stretched to ``width`` x ``height``; used when detection is off. With ``size`` (the
    model's crop side) the points are placed so that aligning them is an exact
    pixel-centre resize of the whole image to ``size`` x ``size``, with no black edge.
    """
    extent = np.array([width, height], dtype=np.float64)
    if size is None:
        return CANONICAL_LANDMARKS * extent
    # OpenCV puts pixel centres on integers: crop x_c = (x + 0.5) * size / width - 0.5.
    return (CANONICAL_LANDMARKS * size + 0.5) * extent / size - 0.5
