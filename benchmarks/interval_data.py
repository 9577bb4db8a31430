"""The per-face raw figures the age intervals are fitted and measured on, cached.

For every image of a split: the labelled face's detection (RetinaFace, once per image,
cached by data set, split and detector), then for every model the age of that face and of
its mirror image (and, for an ensemble, the spread of its members on each), cached by
the sha256 of the weights. Re-fitting after new weights re-runs only the models whose
files changed; a re-run with the same weights reads everything from ``.cache/``.

The figures are the pipeline's own: the same ``load_image``, detector, ``face_crops``,
``mirror_crops`` and ``run_crops`` that :class:`faceage.AgeEstimator` calls, with the
labelled face picked as :func:`benchmarks.common.labelled_face` does.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import faceage
from benchmarks.common import ROOT, Row, labelled_face
from faceage.detection.retinaface import RETINAFACE_SHA256, RetinaFaceDetector
from faceage.images import load_image
from faceage.preprocess import face_crops, mirror_crops
from faceage.results import Face, ImageResult
from faceage.spec import EnsembleSpec, ModelSpec, load_manifest

logger = logging.getLogger(__name__)

CACHE_DIR = ROOT / ".cache" / "intervals"
BATCH = 64

Arrays = dict[str, np.ndarray]


def _load(path: Path) -> Arrays | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _save(path: Path, arrays: Arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(temporary, allow_pickle=False, **arrays)
    temporary.replace(path)


def _rows_key(rows: Sequence[Row]) -> str:
    return hashlib.sha256("\n".join(r.file for r in rows).encode()).hexdigest()[:12]


def detections(rows: Sequence[Row], tag: str) -> Arrays:
    """The labelled face of each row: ``found``, ``box`` (N, 4), ``landmarks`` (N, 5, 2),
    ``score``, and the image ``width`` / ``height``; cached under ``tag``."""
    path = CACHE_DIR / f"detections_{tag}_{_rows_key(rows)}_{RETINAFACE_SHA256[:12]}.npz"
    cached = _load(path)
    if cached is not None:
        return cached
    detector = RetinaFaceDetector()
    n = len(rows)
    out: Arrays = {
        "found": np.zeros(n, dtype=bool),
        "box": np.full((n, 4), np.nan),
        "landmarks": np.full((n, 5, 2), np.nan),
        "score": np.full(n, np.nan),
        "width": np.zeros(n, dtype=np.int64),
        "height": np.zeros(n, dtype=np.int64),
    }
    for index, row in enumerate(rows):
        image = load_image(str(row.path))
        height, width = image.shape[:2]
        found = detector.detect(image)
        faces = tuple(
            Face(age=0.0, box=d.box, landmarks=d.landmarks, detection_score=d.score) for d in found
        )
        result = ImageResult(source=str(row.path), faces=faces, width=width, height=height)
        face = labelled_face(result, row)
        out["width"][index], out["height"][index] = width, height
        if face is not None:
            out["found"][index] = True
            out["box"][index] = face.box
            out["landmarks"][index] = face.landmarks
            out["score"][index] = face.detection_score
        if index % 500 == 0:
            logger.info("detections %s: %d / %d", tag, index, n)
    _save(path, out)
    return out


def weights_key(spec: ModelSpec | EnsembleSpec) -> str:
    """What the cached predictions of ``spec`` depend on: its weights (and layout)."""
    members = spec.members if isinstance(spec, EnsembleSpec) else (spec,)
    text = "|".join(f"{m.name}:{m.file.sha256}" for m in members)
    if isinstance(spec, EnsembleSpec):
        text += "|age:" + ",".join(spec.age_from)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def predictions(name: str, rows: Sequence[Row], found: Arrays, tag: str) -> Arrays:
    """``age`` and ``age_mirror`` of the labelled face of each row (NaN where none was
    found), and ``spread`` / ``spread_mirror``: the ensemble members' spread (NaN for a
    single model). Cached by the weights' sha256."""
    spec = load_manifest().estimator_spec(name)
    path = CACHE_DIR / f"pred_{name}_{weights_key(spec)}_{tag}_{_rows_key(rows)}.npz"
    cached = _load(path)
    if cached is not None:
        return cached
    estimator = faceage.AgeEstimator.from_pretrained(name, detector=None, flip=False)
    n = len(rows)
    out = {k: np.full(n, np.nan) for k in ("age", "age_mirror", "spread", "spread_mirror")}
    todo = [i for i in range(n) if found["found"][i]]
    for start in range(0, len(todo), BATCH):
        chunk = todo[start : start + BATCH]
        crops = np.concatenate(
            [
                face_crops(load_image(str(rows[i].path)), [found["landmarks"][i]], spec)
                for i in chunk
            ]
        )
        plain = estimator.model.run_crops(crops)
        mirrored = estimator.model.run_crops(mirror_crops(crops))
        out["age"][chunk] = plain.age
        out["age_mirror"][chunk] = mirrored.age
        if plain.member_spread is not None and mirrored.member_spread is not None:
            out["spread"][chunk] = plain.member_spread
            out["spread_mirror"][chunk] = mirrored.member_spread
    _save(path, out)
    return out
