"""Decode a large JPEG only at the scale the detector and the crops need.

RetinaFace never looks at more than ``max_side`` (640) pixels along the longer side, and
a 64 px face crop needs far fewer pixels than a 12 MP photo holds. libjpeg can decode
at 1/2, 1/4 or 1/8 of the size straight from the DCT coefficients (OpenCV's
``IMREAD_REDUCED_COLOR_n``), several times faster than a full decode followed by a
resize. So a JPEG is decoded at the largest reduction that still leaves the detector
at least ``max_side`` pixels (its input is then shrunk from that instead of from the
full image), and each image's faces are cut from that decode when it holds at least
twice as many pixels across the face as the crop has; a smaller face triggers a second decode
at a finer scale (full resolution only where needed). Detections and results stay in
the full-resolution (EXIF-rotated) image's pixels.

The two choices are pure functions, :func:`detection_reduction` and
:func:`crop_reduction`, tested in tests/test_scaled_images.py.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from faceage.alignment import alignment_matrix, linear_zoom
from faceage.image_headers import image_size_from_header
from faceage.images import (
    ColorOrder,
    ImageInput,
    decode_image,
    is_jpeg,
    load_image,
    read_image_file,
)

#: The scales libjpeg decodes at directly (1/n of each side).
REDUCTIONS: Final = (1, 2, 4, 8)
#: Image pixels a crop pixel needs (along each side) in a reduced decode, so the crop
#: is still averaged down as it is from the full image: with 1, ages on the large-photo
#: benchmark moved 0.21 years on average against full decoding, with 2 only 0.13 (the
#: part detection's own small changes leave), MAE 4.995 against 4.991
#: (``python -m benchmarks.throughput``). Guarded by tests/test_scaled_images.py.
CROP_OVERSAMPLING: Final = 2.0


def detection_reduction(width: int, height: int, input_side: int | None) -> int:
    """The largest reduction after which the image's longer side still holds at least
    ``input_side`` pixels (so the detector shrinks it to exactly the size it would have
    shrunk the full image to); 1 when the image is not larger than that or
    ``input_side`` is None."""
    if input_side is None or input_side < 1:
        return 1
    longest = max(width, height)
    return max(r for r in REDUCTIONS if math.ceil(longest / r) >= input_side or r == 1)


def crop_zoom(landmarks: np.ndarray, *, size: int, scales: Sequence[float]) -> float:
    """Crop pixels per image pixel of the most demanding of a face's crops (> 1: the
    crop is an enlargement of the face)."""
    # a crop at scale s zooms 1/s as much as the scale-1 crop (see rescale_alignment)
    matrix = alignment_matrix(landmarks, size=size)
    return linear_zoom(matrix) / min(scales)


def crop_reduction(zoom: float, *, at_most: int) -> int:
    """The largest reduction (at most ``at_most``) whose image still has
    :data:`CROP_OVERSAMPLING` pixels for every crop pixel, given the full-resolution
    ``zoom`` of :func:`crop_zoom` (1 where not even the full image has)."""
    fitting = [r for r in REDUCTIONS if r <= at_most and r * zoom * CROP_OVERSAMPLING <= 1.0]
    return max(fitting, default=1)


def to_reduced(landmarks: np.ndarray, reduction: int) -> np.ndarray:
    """Full-resolution pixel coordinates (OpenCV's, pixel centres on integers) in an
    image decoded at ``1/reduction``."""
    return (landmarks + 0.5) / reduction - 0.5


@dataclass(frozen=True)
class ScaledImage:
    """An image decoded at ``1/reduction`` of its full size.

    Attributes:
        pixels: BGR uint8 pixels at that scale.
        reduction: 1 for a full decode.
        width, height: the full-resolution (EXIF-rotated) size.
        data: the encoded JPEG, to decode again at a finer scale (None when
            ``reduction`` is 1).
        source: the name errors give the image.
    """

    pixels: np.ndarray
    reduction: int
    width: int
    height: int
    data: bytes | None
    source: str

    def at_reduction(self, reduction: int) -> np.ndarray:
        """The pixels at ``1/reduction`` (a new decode unless it is this one's scale)."""
        if reduction == self.reduction or self.data is None:
            return self.pixels
        return decode_image(self.data, source=self.source, reduction=reduction)


def load_scaled(
    image: ImageInput,
    *,
    color_order: ColorOrder = "bgr",
    source: str,
    input_side: int | None,
) -> ScaledImage:
    """Load ``image`` (as :func:`faceage.images.load_image` does, with the same errors),
    decoding a JPEG path or bytes at the reduction :func:`detection_reduction` allows."""
    data: bytes | None = None
    if isinstance(image, (str, os.PathLike)):
        data = read_image_file(Path(os.fsdecode(image)))
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    size = image_size_from_header(data) if data is not None and is_jpeg(data) else None
    if data is None or size is None:
        pixels = (
            load_image(image, color_order=color_order, source=source)
            if data is None
            else decode_image(data, source=source)
        )
        return ScaledImage(pixels, 1, pixels.shape[1], pixels.shape[0], None, source)
    width, height = size
    reduction = detection_reduction(width, height, input_side)
    pixels = decode_image(data, source=source, reduction=reduction)
    if reduction == 1:
        return ScaledImage(pixels, 1, pixels.shape[1], pixels.shape[0], None, source)
    # EXIF orientation may have turned the image: the header's size is before turning.
    got = (pixels.shape[1], pixels.shape[0])
    if got == (math.ceil(height / reduction), math.ceil(width / reduction)):
        width, height = height, width
    elif got != (math.ceil(width / reduction), math.ceil(height / reduction)):
        pixels = decode_image(data, source=source)  # an unexpected size: trust a full decode
        return ScaledImage(pixels, 1, pixels.shape[1], pixels.shape[0], None, source)
    return ScaledImage(pixels, reduction, width, height, data, source)
