"""Draw what faceage found onto a copy of the image, and save such copies safely.

:func:`draw_faces` is pure: it never touches the caller's array. :class:`AnnotationWriter`
is the part of ``faceage batch --draw OUTDIR`` that writes files, and the one place that
decides where they go: always inside ``OUTDIR`` (relative paths mirrored, ``..`` and
symlinks that lead out refused), never onto an input image (``OUTDIR`` equal to the
input folder is refused outright).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np

from faceage.images import load_image
from faceage.results import Face, ImageResult

logger = logging.getLogger(__name__)

#: BGR colours of boxes: female, male, age-only models.
FEMALE_COLOR: Final = (180, 60, 230)
MALE_COLOR: Final = (230, 140, 40)
AGE_ONLY_COLOR: Final = (60, 200, 60)
#: Landmark colours in landmark order: eyes, nose, mouth corners.
LANDMARK_COLORS: Final = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))
#: Suffixes OpenCV can encode; other inputs are written as ``<name>.jpg``.
WRITABLE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

# Characters replaced in output file names: separators, Windows-reserved, controls.
_UNSAFE_NAME_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')


class UnsafeOutputPathError(ValueError):
    """An annotated image would be written outside ``OUTDIR`` or over an input."""


def face_label(face: Face) -> str:
    """Short label of a face: ``"34 (29-40) F 0.93"``: the age, its interval where the
    model has one, and the gender with its probability where it has one."""
    label = f"{round(face.age)}"
    if face.age_low is not None and face.age_high is not None:
        label += f" ({math.floor(face.age_low)}-{math.ceil(face.age_high)})"
    if face.gender is not None:
        label += f" {'F' if face.gender == 'female' else 'M'}"
        if face.gender_probability is not None:
            label += f" {face.gender_probability:.2f}"
    return label


def draw_faces(
    image_bgr: np.ndarray,
    faces: Iterable[Face],
    *,
    labels: Sequence[str] | None = None,
    colors: Sequence[tuple[int, int, int]] | None = None,
) -> np.ndarray:
    """An annotated copy of ``image_bgr`` (``HxWx3`` uint8): box, landmarks and label per face.

    Coordinates are those of :class:`~faceage.results.Face` (pixels of the same image).
    ``labels`` and ``colors`` (BGR), one per face, replace :func:`face_label` and the
    colour by gender (``faceage video`` labels and colours faces by track).
    """
    face_list = list(faces)
    if labels is not None and len(labels) != len(face_list):
        raise ValueError(f"got {len(face_list)} faces but {len(labels)} labels")
    if colors is not None and len(colors) != len(face_list):
        raise ValueError(f"got {len(face_list)} faces but {len(colors)} colors")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(
            f"draw_faces needs an HxWx3 uint8 BGR image, got shape {image_bgr.shape} "
            f"dtype {image_bgr.dtype}; convert it with faceage.images.load_image"
        )
    canvas = np.ascontiguousarray(image_bgr.copy())
    height, width = canvas.shape[:2]
    thickness = max(1, round(min(height, width) / 250))
    font_scale = max(0.35, min(height, width) / 700)
    for number, face in enumerate(face_list):
        color = (
            colors[number]
            if colors is not None
            else AGE_ONLY_COLOR
            if face.gender is None
            else FEMALE_COLOR
            if face.gender == "female"
            else MALE_COLOR
        )
        x1, y1, x2, y2 = (round(v) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        for (x, y), point_color in zip(face.landmarks, LANDMARK_COLORS):
            cv2.circle(canvas, (round(x), round(y)), thickness + 1, point_color, -1, cv2.LINE_AA)
        label = labels[number] if labels is not None else face_label(face)
        _draw_label(canvas, label, (x1, y1), color, font_scale, thickness)
    return canvas


def _draw_label(
    canvas: np.ndarray,
    text: str,
    anchor: tuple[int, int],
    color: tuple[int, int, int],
    font_scale: float,
    thickness: int,
) -> None:
    x1, y1 = anchor
    font = cv2.FONT_HERSHEY_SIMPLEX
    (text_w, text_h), baseline = cv2.getTextSize(text, font, font_scale, thickness)
    pad = 2
    top = y1 - text_h - baseline - 2 * pad
    if top < 0:  # no room above the box: put the label under its top edge
        top = max(0, min(y1, canvas.shape[0] - text_h - baseline - 2 * pad))
    left = max(0, min(x1, canvas.shape[1] - text_w - 2 * pad))
    bottom = top + text_h + baseline + 2 * pad
    cv2.rectangle(canvas, (left, top), (left + text_w + 2 * pad, bottom), color, -1)
    cv2.putText(
        canvas,
        text,
        (left + pad, bottom - baseline - pad),
        font,
        font_scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def safe_name(name: str) -> str:
    """One path component made safe to create: separators and controls become ``_``."""
    cleaned = _UNSAFE_NAME_CHARS.sub("_", name).strip()
    if cleaned in ("", ".", ".."):
        raise UnsafeOutputPathError(f"refusing the path component {name!r}")
    return cleaned


class AnnotationWriter:
    """Writes annotated copies of a batch's images under ``out_dir``.

    The copy of ``<input_root>/a/b.jpg`` is ``<out_dir>/a/b.jpg``; names whose suffix
    OpenCV cannot write get ``.jpg`` appended, and a name already used in this run gets
    ``-2``, ``-3``... before its suffix.

    Args:
        out_dir: where the copies go (created if missing).
        input_root: the folder the inputs' relative paths are taken from.
        inputs: every input path of the run; none of them is ever written.

    Raises:
        UnsafeOutputPathError: ``out_dir`` is ``input_root``, an input file, or a file.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        input_root: str | os.PathLike[str],
        inputs: Sequence[str] = (),
    ) -> None:
        self.out_dir = Path(os.fsdecode(out_dir))
        self.input_root = Path(os.fsdecode(input_root))
        self._real_out = os.path.realpath(self.out_dir)
        self._protected = {os.path.realpath(p) for p in inputs}
        if self._real_out == os.path.realpath(self.input_root):
            raise UnsafeOutputPathError(
                f"{self.out_dir}: the draw folder is the input folder, so annotated copies "
                "would overwrite the photos; choose another folder"
            )
        if self._real_out in self._protected or self.out_dir.is_file():
            raise UnsafeOutputPathError(
                f"{self.out_dir}: is a file; the draw target must be a folder"
            )
        self._used: set[str] = set()

    def output_path(self, source: str) -> Path:
        """Where the annotated copy of ``source`` goes.

        Raises:
            UnsafeOutputPathError: ``source`` is not under ``input_root``, has a ``..``
                component, or its copy would land outside ``out_dir`` or on an input.
        """
        relative = os.path.relpath(os.path.abspath(source), os.path.abspath(self.input_root))
        parts = Path(relative).parts
        if not parts or os.path.isabs(relative) or ".." in parts:
            raise UnsafeOutputPathError(f"{source}: not inside {self.input_root}; not drawn")
        names = [safe_name(part) for part in parts]
        stem, suffix = os.path.splitext(names[-1])
        if suffix.lower() not in WRITABLE_SUFFIXES:
            stem, suffix = names[-1], ".jpg"
        candidate = self.out_dir.joinpath(*names[:-1], stem + suffix)
        counter = 1
        while str(candidate) in self._used:
            counter += 1
            candidate = self.out_dir.joinpath(*names[:-1], f"{stem}-{counter}{suffix}")
        real = os.path.realpath(candidate)
        if not _within(real, self._real_out) or real == self._real_out:
            raise UnsafeOutputPathError(
                f"{source}: its copy would land at {real}, outside {self.out_dir}; not drawn"
            )
        if real in self._protected:
            raise UnsafeOutputPathError(
                f"{source}: its copy would overwrite the input {real}; not drawn"
            )
        return candidate

    def write(self, result: ImageResult, image_bgr: np.ndarray | None = None) -> Path | None:
        """Draw ``result`` on its image and save it; None (logged) if it cannot be.

        ``image_bgr`` is the decoded image if the caller still has it; otherwise the
        image is read again from ``result.source``. Error results are not drawn.
        """
        if not result.ok:
            return None
        try:
            target = self.output_path(result.source)
            pixels = image_bgr if image_bgr is not None else load_image(result.source)
            canvas = draw_faces(pixels, result.faces)
            ok, encoded = cv2.imencode(target.suffix.lower(), canvas)
            if not ok:
                raise OSError(f"OpenCV could not encode {target.suffix} data")
            target.parent.mkdir(parents=True, exist_ok=True)
            if not _within(os.path.realpath(target.parent), self._real_out):
                raise UnsafeOutputPathError(f"{target.parent}: leads outside {self.out_dir}")
            # Write beside the target, then rename: a symlink at the target is replaced,
            # never written through, and a crash leaves no half-written image.
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            temporary.write_bytes(encoded.tobytes())
            os.replace(temporary, target)
        except Exception as exc:  # one image that cannot be drawn never ends a batch
            logger.warning("not drawn: %s: %s", result.source, exc)
            return None
        self._used.add(str(target))
        return target


def write_annotated(
    results: Iterable[ImageResult],
    out_dir: str | os.PathLike[str],
    *,
    input_root: str | os.PathLike[str],
) -> list[Path]:
    """Annotated copies of ``results`` under ``out_dir``; returns the files written."""
    results = list(results)
    writer = AnnotationWriter(out_dir, input_root=input_root, inputs=[r.source for r in results])
    written = [writer.write(result) for result in results]
    return [path for path in written if path is not None]
