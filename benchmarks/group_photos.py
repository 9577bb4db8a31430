"""Large multi-face test photos for the end-to-end benchmarks, made on the fly.

No group photos with free licences are on this machine, so each one is a collage: a
textured background at a real camera size with UTKFace *test* chips pasted at several
sizes on a jittered grid. :func:`make_group_photos` makes the three group photos (1080p,
12 MP portrait, 12 MP landscape); :func:`make_large_photos` a folder of camera-sized
photos (640x480 to 1920x1080) with 1-4 faces each. Every pasted face keeps its square
and its UTKFace age, so recall and MAE can be measured on them. They are written as
JPEG to a temporary folder for one run (never committed: they are derived from
UTKFace) and are the same for a given seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmarks.common import UTKFACE, read_utkface

# (width, height, faces): a 1080p frame, a 12 MP phone photo in portrait and landscape
LAYOUTS = ((1920, 1080, 6), (3024, 4032, 12), (4032, 3024, 20))
#: Camera sizes of :func:`make_large_photos`.
LARGE_SIZES = ((640, 480), (1024, 768), (1280, 720), (1600, 1200), (1920, 1080))


@dataclass(frozen=True)
class PastedFace:
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 of the pasted chip
    age: int


@dataclass(frozen=True)
class GroupPhoto:
    path: Path
    width: int
    height: int
    faces: int  # faces pasted
    pasted: tuple[PastedFace, ...] = ()


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


def _collage(
    path: Path, width: int, height: int, count: int, rng: np.random.Generator
) -> GroupPhoto:
    chips = read_utkface("test")
    canvas = _background(width, height, rng)
    cols = int(np.ceil(np.sqrt(count * width / height)))
    rows = int(np.ceil(count / cols))
    cell_w, cell_h = width // cols, height // rows
    cells = rng.permutation(rows * cols)[:count]
    pasted = []
    for cell in cells:
        row_data = chips[rng.integers(len(chips))]
        source = UTKFACE / "images" / row_data.file
        chip = cv2.imread(str(source))
        if chip is None:
            raise FileNotFoundError(f"cannot read {source}")
        side = int(min(cell_w, cell_h) * rng.uniform(0.6, 0.9))
        face = cv2.resize(chip, (side, side), interpolation=cv2.INTER_LINEAR)
        row, col = divmod(int(cell), cols)
        x = col * cell_w + int(rng.integers(0, cell_w - side + 1))
        y = row * cell_h + int(rng.integers(0, cell_h - side + 1))
        canvas[y : y + side, x : x + side] = face
        pasted.append(PastedFace((x, y, x + side, y + side), row_data.age))
    cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return GroupPhoto(path, width, height, count, tuple(pasted))


def make_group_photos(out_dir: Path, seed: int = 0) -> list[GroupPhoto]:
    """Write the :data:`LAYOUTS` photos as JPEG under ``out_dir``."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        _collage(out_dir / f"group_{number}_{width}x{height}.jpg", width, height, count, rng)
        for number, (width, height, count) in enumerate(LAYOUTS)
    ]


def make_large_photos(out_dir: Path, count: int = 60, seed: int = 0) -> list[GroupPhoto]:
    """Write ``count`` photos of the :data:`LARGE_SIZES` with 1-4 faces each under ``out_dir``."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = []
    for number in range(count):
        width, height = LARGE_SIZES[number % len(LARGE_SIZES)]
        faces = int(rng.integers(1, 5))
        path = out_dir / f"large_{number:03d}_{width}x{height}.jpg"
        photos.append(_collage(path, width, height, faces, rng))
    return photos


def match_faces(
    photo: GroupPhoto, found: Sequence[tuple[Sequence[float], float]]
) -> list[tuple[PastedFace, float | None]]:
    """Each pasted face with the age of the detected face whose box centre lies inside its
    square (the best-scored such face: ``found`` is in score order), or None if missed."""
    out: list[tuple[PastedFace, float | None]] = []
    for face in photo.pasted:
        x1, y1, x2, y2 = face.box
        age = next(
            (
                a
                for (bx1, by1, bx2, by2, *_), a in found
                if x1 <= (bx1 + bx2) / 2 <= x2 and y1 <= (by1 + by2) / 2 <= y2
            ),
            None,
        )
        out.append((face, age))
    return out
