"""Batch augmentation on cached crops, done in torch on whole batches (cheap on 2 cores).

One random geometric transform per face (flip, shift, scale, rotation) is applied to all
of its context crops alike, since they show the same face; pixels moved in from outside
are black, as at inference (``faceage.alignment.BORDER_VALUE``). Colour jitter
(brightness, contrast, saturation) works on RGB pixels in [0, 1]. Random erasing
(``"erase": {"p": 0.5, "max_side": 0.4}``) greys out one rectangle of a face with
probability p, each side 10% to ``max_side`` of the crop, in the same place on every
crop of the face.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def to_unit_rgb(crops: np.ndarray) -> torch.Tensor:
    """uint8 BGR ``(N, K, S, S, 3)`` -> float RGB in [0, 1], ``(N, K, 3, S, S)``."""
    x = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1]))
    return x.permute(0, 1, 4, 2, 3).float().div_(255.0)


def normalize(x: torch.Tensor, mean: float = 0.5, std: float = 0.5) -> torch.Tensor:
    return (x - mean) / std


def augment(x: torch.Tensor, settings: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
    """Random flip/shift/scale/rotation + colour jitter of ``(N, K, 3, S, S)`` in [0, 1]."""
    n, k = x.shape[:2]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=generator)

    angle = uniform(-1, 1) * math.radians(settings.get("max_rotation_deg", 0.0))
    scale = 1.0 + uniform(-1, 1) * settings.get("max_scale", 0.0)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * settings.get("max_shift", 0.0) * 2
    flip = (
        torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        if settings.get("flip", False)
        else torch.ones(n)
    )
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], 1),
            torch.stack([sin * flip, cos, shift[:, 1]], 1),
        ],
        1,
    )
    theta = theta.repeat_interleave(k, dim=0)
    flat = x.reshape(n * k, *x.shape[2:])
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    flat = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = flat.reshape(x.shape)

    shape = (n, 1, 1, 1, 1)
    brightness = settings.get("brightness", 0.0)
    contrast = settings.get("contrast", 0.0)
    saturation = settings.get("saturation", 0.0)
    gray = (0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]).unsqueeze(2)
    if saturation:
        x = gray + (x - gray) * (1 + uniform(-saturation, saturation)).view(shape)
    if contrast:
        mean = gray.mean(dim=(1, 2, 3, 4), keepdim=True)
        x = mean + (x - mean) * (1 + uniform(-contrast, contrast)).view(shape)
    if brightness:
        x = x * (1 + uniform(-brightness, brightness)).view(shape)
    x = x.clamp_(0.0, 1.0)
    if settings.get("erase"):
        x = erase(x, settings["erase"], uniform, generator)
    return x


def erase(
    x: torch.Tensor,
    settings: dict[str, Any],
    uniform: Callable[[float, float], torch.Tensor],
    generator: torch.Generator,
) -> torch.Tensor:
    """Grey (0.5) out one random rectangle per face, with probability ``settings["p"]``."""
    n, size = x.shape[0], x.shape[-1]
    chosen = torch.rand(n, generator=generator) < settings.get("p", 0.5)
    high = settings.get("max_side", 0.4)
    height, width = uniform(0.1, high), uniform(0.1, high)
    top, left = uniform(0, 1) * (1 - height), uniform(0, 1) * (1 - width)
    position = (torch.arange(size, dtype=x.dtype) + 0.5) / size
    rows = (position >= top[:, None]) & (position < (top + height)[:, None])
    cols = (position >= left[:, None]) & (position < (left + width)[:, None])
    mask = (rows[:, :, None] & cols[:, None, :] & chosen[:, None, None]).view(n, 1, 1, size, size)
    return torch.where(mask, torch.full_like(x, 0.5), x)
