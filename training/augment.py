"""Batch augmentation on cached crops, done in torch on whole batches (cheap on 2 cores).

One random geometric transform per face (flip, shift, scale, rotation) is applied to all
of its context crops alike, since they show the same face; pixels moved in from outside
are black, as at inference (``faceage.alignment.BORDER_VALUE``). Colour jitter
(brightness, contrast, saturation) works on RGB pixels in [0, 1].

What real photos do and neither UTKFace nor All-Age-Faces shows much of, each applied
to a face with its own probability and the same on all its crops:
``"white_balance": 0.1`` scales each colour channel by 1 +- 0.1 and ``"gamma": 0.3``
raises the pixels to exp(+-0.3) (lighting); ``"downscale": {"p", "min_scale"}`` shrinks
the crop to a random 0.35-1 of its side and back (a small face in a large photo);
``"blur": {"p", "max_sigma"}`` blurs it (focus, motion); ``"jpeg": {"p", "min_quality"}``
re-encodes it as a JPEG of quality min_quality-95 (phones, messengers, the web).
Landmark misalignment is what the random shift, scale and rotation already model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
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
    if settings.get("white_balance"):
        spread = settings["white_balance"]
        gains = 1 + (torch.rand(n, 3, generator=generator) * 2 - 1) * spread
        x = x * gains.view(n, 1, 3, 1, 1)
    x = x.clamp_(0.0, 1.0)
    if settings.get("gamma"):
        x = x.pow(torch.exp(uniform(-settings["gamma"], settings["gamma"])).view(shape))
    if settings.get("downscale"):
        x = downscale(x, settings["downscale"], uniform, generator)
    if settings.get("blur"):
        x = blur(x, settings["blur"], uniform, generator)
    if settings.get("jpeg"):
        x = jpeg(x, settings["jpeg"], uniform, generator)
    return x


def _chosen(n: int, settings: dict[str, Any], generator: torch.Generator) -> list[int]:
    # always n draws, so a batch's later draws do not depend on which faces were chosen
    return (
        torch.nonzero(torch.rand(n, generator=generator) < settings.get("p", 0.3))
        .flatten()
        .tolist()
    )


def downscale(
    x: torch.Tensor,
    settings: dict[str, Any],
    uniform: Callable[[float, float], torch.Tensor],
    generator: torch.Generator,
) -> torch.Tensor:
    """Shrink chosen faces to ``min_scale``-1 of their side (area) and back (bilinear)."""
    n, size = x.shape[0], x.shape[-1]
    scale = uniform(settings.get("min_scale", 0.35), 1.0)
    out = x.clone()
    for i in _chosen(n, settings, generator):
        side = max(8, round(size * float(scale[i])))
        small = F.interpolate(x[i], size=(side, side), mode="area")
        out[i] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    return out


def blur(
    x: torch.Tensor,
    settings: dict[str, Any],
    uniform: Callable[[float, float], torch.Tensor],
    generator: torch.Generator,
) -> torch.Tensor:
    """Gaussian blur of chosen faces, sigma 0.3-``max_sigma`` pixels of the crop."""
    n = x.shape[0]
    sigma = uniform(0.3, settings.get("max_sigma", 1.5))
    out = x.clone()
    for i in _chosen(n, settings, generator):
        radius = max(1, math.ceil(2.5 * float(sigma[i])))
        taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
        kernel = torch.exp(-(taps**2) / (2 * float(sigma[i]) ** 2))
        kernel = kernel / kernel.sum()
        crops = x[i].reshape(-1, 1, *x.shape[-2:])  # every crop and channel alike
        crops = F.pad(crops, (radius, radius, radius, radius), mode="replicate")
        crops = F.conv2d(crops, kernel.view(1, 1, 1, -1))
        crops = F.conv2d(crops, kernel.view(1, 1, -1, 1))
        out[i] = crops.reshape(x[i].shape)
    return out


def jpeg(
    x: torch.Tensor,
    settings: dict[str, Any],
    uniform: Callable[[float, float], torch.Tensor],
    generator: torch.Generator,
) -> torch.Tensor:
    """Re-encode chosen faces as JPEG of quality ``min_quality``-95 (OpenCV, as a camera
    or an upload would)."""
    n = x.shape[0]
    quality = uniform(settings.get("min_quality", 30), 95)
    out = x.clone()
    for i in _chosen(n, settings, generator):
        for k in range(x.shape[1]):
            rgb = (x[i, k].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            _, encoded = cv2.imencode(
                ".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])]
            )
            decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
            out[i, k] = torch.from_numpy(np.ascontiguousarray(decoded)).permute(2, 0, 1) / 255.0
    return out
