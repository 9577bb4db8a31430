"""Crop caches of every data set, built with faceage's own detector and alignment.

Training crops must be inference crops, so every image goes through
``faceage.images.load_image`` -> ``RetinaFaceDetector.detect`` -> ``context_crops``,
exactly as ``faceage`` does at prediction time. The crops are stored once per data set
as uint8 ``.npy`` arrays that training memory-maps; one 64 px cache at scales (0.8, 1.0,
1.25) serves every compact model (single-crop models take the 1.0 slice).

Which face carries the label and what happens when none is found is the data set's
(``training/datasets.py``): on UTKFace's chips the best-scored face, or the chip itself
treated as an aligned crop; on All-Age-Faces the face nearest the image centre, or the
photo is left out. ``meta.json`` counts, per split, the photos with no face and those
with more than one.

    python -m training.data                                 # UTKFace, 64 px, 0.8/1.0/1.25
    python -m training.data --dataset aaf                   # the same for All-Age-Faces
    python -m training.data --dataset aaf --size 112 --scales 1.0   # MobileAgeNet's cache
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import numpy as np

from training.datasets import REPO_ROOT, SPLITS, Dataset, get_dataset

CACHE_ROOT = REPO_ROOT / ".cache" / "crops"
DEFAULT_SCALES = (0.8, 1.0, 1.25)

_worker_state: dict = {}


def cache_dir(size: int, scales: tuple[float, ...], dataset: str = "utkface") -> Path:
    tag = "-".join(f"{s:g}" for s in scales)
    return CACHE_ROOT / f"{dataset}_s{size}_x{tag}"


def _init_worker(size: int, scales: tuple[float, ...], dataset: Dataset) -> None:
    import cv2

    from faceage.detection.retinaface import RetinaFaceDetector

    cv2.setNumThreads(1)
    _worker_state["detector"] = RetinaFaceDetector(intra_op_num_threads=1)
    _worker_state["size"] = size
    _worker_state["scales"] = scales
    _worker_state["dataset"] = dataset


def labelled_detection(faces: list, width: int, height: int, rule: str):
    """The detection a label belongs to: the first (best-scored) one, or for
    ``rule="centre"`` the one whose box centre is nearest the image centre."""
    if rule == "best" or len(faces) < 2:
        return faces[0]

    def distance(face) -> float:
        x1, y1, x2, y2 = face.box
        return ((x1 + x2) / 2 - width / 2) ** 2 + ((y1 + y2) / 2 - height / 2) ** 2

    return min(faces, key=distance)


def _crop_one(path: str) -> tuple[np.ndarray, bool, float, int]:
    from faceage.alignment import context_crops, crop_landmarks
    from faceage.images import load_image

    dataset: Dataset = _worker_state["dataset"]
    image = load_image(path)
    faces = _worker_state["detector"].detect(image)
    if faces:
        face = labelled_detection(faces, image.shape[1], image.shape[0], dataset.labelled_face)
        landmarks = np.asarray(face.landmarks, dtype=np.float64)
        detected, score = True, float(face.score)
    else:
        # a dropped photo keeps a row (masked out at load time) so rows match labels.csv
        landmarks = crop_landmarks(image.shape[1], image.shape[0])
        detected, score = False, 0.0
    crops = context_crops(
        image, landmarks, size=_worker_state["size"], scales=_worker_state["scales"]
    )
    return crops, detected, score, len(faces)


def build_cache(
    size: int = 64,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    *,
    dataset: str = "utkface",
    workers: int = 2,
    limit: int | None = None,
) -> Path:
    """Detect, align and crop every labelled image of ``dataset``; return the cache folder."""
    source = get_dataset(dataset)
    rows = source.read_labels()
    if limit:
        rows = rows[:limit]
    out = cache_dir(size, scales, dataset)
    out.mkdir(parents=True, exist_ok=True)
    n = len(rows)
    crops = np.lib.format.open_memmap(
        out / "crops.tmp.npy", mode="w+", dtype=np.uint8, shape=(n, len(scales), size, size, 3)
    )
    detected = np.zeros(n, dtype=bool)
    scores = np.zeros(n, dtype=np.float32)
    face_counts = np.zeros(n, dtype=np.int16)
    paths = [str(source.images / r["file"]) for r in rows]
    start = time.time()
    with mp.get_context("fork").Pool(
        workers, initializer=_init_worker, initargs=(size, scales, source)
    ) as pool:
        for i, (crop, found, score, count) in enumerate(pool.imap(_crop_one, paths, chunksize=32)):
            crops[i] = crop
            detected[i], scores[i], face_counts[i] = found, score, count
            if (i + 1) % 2000 == 0:
                print(f"{i + 1}/{n} images, {time.time() - start:.0f}s", flush=True)
    crops.flush()
    del crops
    os.replace(out / "crops.tmp.npy", out / "crops.npy")
    np.save(out / "ages.npy", np.array([int(r["age"]) for r in rows], dtype=np.float32))
    np.save(out / "genders.npy", np.array([int(r["gender"]) for r in rows], dtype=np.int64))
    np.save(out / "splits.npy", np.array([SPLITS.index(r["split"]) for r in rows], dtype=np.int8))
    np.save(out / "detected.npy", detected)
    np.save(out / "scores.npy", scores)
    np.save(out / "face_counts.npy", face_counts)
    (out / "files.txt").write_text("\n".join(r["file"] for r in rows) + "\n")
    split_of = np.array([r["split"] for r in rows])
    meta = {
        "dataset": source.name,
        "folder": str(source.root),
        "description": source.description,
        "size": size,
        "scales": list(scales),
        "color_order": "bgr",
        "detector": "retinaface (faceage default settings)",
        "labelled_face": {
            "best": "the best-scoring face",
            "centre": "the face whose box centre is nearest the image centre",
        }[source.labelled_face],
        "when_no_face": {
            "chip": "faceage.alignment.crop_landmarks (the image treated as an aligned crop)",
            "drop": "left out of training and validation (masked at load time)",
        }[source.when_no_face],
        "images": n,
        "seconds": round(time.time() - start, 1),
        "per_split": {
            split: {
                "images": int((split_of == split).sum()),
                "not_detected": int(((split_of == split) & ~detected).sum()),
                "more_than_one_face": int(((split_of == split) & (face_counts > 1)).sum()),
            }
            for split in SPLITS
        },
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def cache_meta(
    size: int = 64, scales: tuple[float, ...] = DEFAULT_SCALES, dataset: str = "utkface"
) -> dict:
    return json.loads((cache_dir(size, scales, dataset) / "meta.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="utkface", help="a name in training/datasets.py")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--scales", type=float, nargs="+", default=list(DEFAULT_SCALES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N images (smoke test)")
    args = parser.parse_args()
    out = build_cache(
        args.size, tuple(args.scales), dataset=args.dataset, workers=args.workers, limit=args.limit
    )
    print(json.dumps(json.loads((out / "meta.json").read_text()), indent=2))


if __name__ == "__main__":
    main()
