"""From detected faces to the network's input tensor, as the model's spec says.

Crops are made by :mod:`faceage.alignment`; this module only arranges and normalises
them: colour order, ``(x / 255 - mean) / std``, and the ``(N, 3, S, S)`` or
``(N, K, 3, S, S)`` layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceage.alignment import context_crops
from faceage.spec import EnsembleSpec, ModelSpec


def face_crops(
    image: np.ndarray, landmarks: Sequence[np.ndarray], spec: ModelSpec | EnsembleSpec
) -> np.ndarray:
    """Context crops of every face: uint8 BGR ``(F, K, S, S, 3)``."""
    size = spec.input_size
    if not landmarks:
        return np.zeros((0, spec.num_crops, size, size, 3), dtype=np.uint8)
    return np.stack(
        [context_crops(image, points, size=size, scales=spec.crop_scales) for points in landmarks]
    )


def mirror_crops(crops: np.ndarray) -> np.ndarray:
    """The crops ``(N, K, S, S, 3)`` flipped left to right (test-time flip)."""
    return np.ascontiguousarray(crops[:, :, :, ::-1])


def to_input_tensor(crops: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Normalise uint8 BGR crops ``(N, K, S, S, 3)`` into the model's float32 input."""
    if crops.ndim != 5 or crops.shape[1] != spec.num_crops or crops.shape[-1] != 3:
        raise ValueError(
            f"expected crops of shape (N, {spec.num_crops}, S, S, 3), got {crops.shape}"
        )
    pixels = crops[..., ::-1] if spec.color_order == "rgb" else crops
    mean = (np.asarray(spec.mean, dtype=np.float32) * 255.0)[:, None, None]
    inv_std = (1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0))[:, None, None]
    # Lay out the uint8 pixels first (a quarter of the bytes to move), then one float pass.
    planar = np.ascontiguousarray(pixels.transpose(0, 1, 4, 2, 3))
    tensor: np.ndarray = np.subtract(planar, mean, dtype=np.float32)
    tensor *= inv_std
    if spec.num_crops == 1:
        tensor = tensor[:, 0]
    return tensor
