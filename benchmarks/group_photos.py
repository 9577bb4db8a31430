"""Large multi-face test photos for the end-to-end speed benchmark, made on the fly.

No group photos with free licences are on this machine, so each one is a collage: a
textured background at a real camera size (1080p, 12 MP portrait, 12 MP landscape) with
UTKFace *test* chips pasted at several sizes on a jittered grid. They are written as
JPEG to a temporary folder for one run (never committed: they are derived from
UTKFace) and are the same for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import UTKFACE, read_utkface

# (width, height, faces): a 1080p frame, a 12 MP phone photo in portrait and landscape
LAYOUTS = ((1920, 1080, 6), (3024, 4032, 12), (4032, 3024, 20))


@dataclass(frozen=True)
class GroupPhoto:
    path: Path
    width: int
    height: int
    faces: int  # faces pasted


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour gradient plus blurred noise: not flat, so JPEG has real work."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    canvas = np.empty((height, width, 3), np.float32)
    for channel in range(3):
        a, b, c = rng.uniform(40, 200, 3)
        canvas[..., channel] = a + (b - a) * xs / width + (c - a) * ys / height / 2
    noise = rng.normal(0, 40, (height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    canvas += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def make_group_photos(out_dir: Path, seed: int = 0) -> list[GroupPhoto]:
    """Write the :data:`LAYOUTS` photos as JPEG under ``out_dir``."""
    rng = np.random.default_rng(seed)
    chips = read_utkface("test")
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = []
    for number, (width, height, count) in enumerate(LAYOUTS):
        canvas = _background(width, height, rng)
        cols = int(np.ceil(np.sqrt(count * width / height)))
        rows = int(np.ceil(count / cols))
        cell_w, cell_h = width // cols, height // rows
        cells = rng.permutation(rows * cols)[:count]
        for cell in cells:
            source = UTKFACE / "images" / chips[rng.integers(len(chips))].file
            chip = cv2.imread(str(source))
            if chip is None:
                raise FileNotFoundError(f"cannot read {source}")
            side = int(min(cell_w, cell_h) * rng.uniform(0.6, 0.9))
            face = cv2.resize(chip, (side, side), interpolation=cv2.INTER_LINEAR)
            row, col = divmod(int(cell), cols)
            x = col * cell_w + int(rng.integers(0, cell_w - side + 1))
            y = row * cell_h + int(rng.integers(0, cell_h - side + 1))
            canvas[y : y + side, x : x + side] = face
        path = out_dir / f"group_{number}_{width}x{height}.jpg"
        cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
        photos.append(GroupPhoto(path, width, height, count))
    return photos
