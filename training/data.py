"""UTKFace crop caches built with faceage's own detector and alignment.

Training crops must be inference crops, so every image goes through
``faceage.images.load_image`` -> ``RetinaFaceDetector.detect`` -> ``context_crops``,
exactly as ``faceage`` does at prediction time. The crops are stored once as uint8
``.npy`` arrays that training memory-maps; one 64 px cache at scales (0.8, 1.0, 1.25)
serves every compact model (single-crop models take the 1.0 slice).

When RetinaFace finds no face in a chip, the chip is treated as an aligned crop
(``faceage.alignment.crop_landmarks``), the ``detected`` flag is False, and the count
is written to the cache's ``meta.json`` so model cards can report it.

    python -m training.data                       # 64 px, scales 0.8/1.0/1.25
    python -m training.data --size 224 --scales 1.0   # single-crop cache for MobileAgeNet
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
UTKFACE_DIR = Path(os.environ.get("FACEAGE_UTKFACE", "/work/shared/datasets/utkface"))
CACHE_ROOT = REPO_ROOT / ".cache" / "crops"
SPLITS = ("train", "val", "test")
DEFAULT_SCALES = (0.8, 1.0, 1.25)

_worker_state: dict = {}


def committed_file(relative: str, commit: str) -> bytes:
    """The bytes of ``relative`` (a path in the repository) as committed in ``commit``."""
    shown = subprocess.run(
        ["git", "show", f"{commit}:{relative}"], cwd=REPO_ROOT, capture_output=True, check=False
    )
    if shown.returncode != 0:
        raise ValueError(
            f"git has no {relative} at {commit!r} ({shown.stderr.decode(errors='replace').strip()})"
        )
    return shown.stdout


def cache_dir(size: int, scales: tuple[float, ...]) -> Path:
    tag = "-".join(f"{s:g}" for s in scales)
    return CACHE_ROOT / f"utkface_s{size}_x{tag}"


def _init_worker(size: int, scales: tuple[float, ...]) -> None:
    import cv2

    from faceage.detection.retinaface import RetinaFaceDetector

    cv2.setNumThreads(1)
    _worker_state["detector"] = RetinaFaceDetector(intra_op_num_threads=1)
    _worker_state["size"] = size
    _worker_state["scales"] = scales


def _crop_one(path: str) -> tuple[np.ndarray, bool, float]:
    from faceage.alignment import context_crops, crop_landmarks
    from faceage.images import load_image

    image = load_image(path)
    faces = _worker_state["detector"].detect(image)
    if faces:
        landmarks = np.asarray(faces[0].landmarks, dtype=np.float64)
        detected, score = True, float(faces[0].score)
    else:
        landmarks = crop_landmarks(image.shape[1], image.shape[0])
        detected, score = False, 0.0
    crops = context_crops(
        image, landmarks, size=_worker_state["size"], scales=_worker_state["scales"]
    )
    return crops, detected, score


def read_labels(root: Path = UTKFACE_DIR) -> list[dict[str, str]]:
    with open(root / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def build_cache(
    size: int = 64,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    *,
    workers: int = 2,
    limit: int | None = None,
) -> Path:
    """Detect, align and crop every labelled image; return the cache directory."""
    rows = read_labels()
    if limit:
        rows = rows[:limit]
    out = cache_dir(size, scales)
    out.mkdir(parents=True, exist_ok=True)
    n = len(rows)
    crops = np.lib.format.open_memmap(
        out / "crops.tmp.npy", mode="w+", dtype=np.uint8, shape=(n, len(scales), size, size, 3)
    )
    detected = np.zeros(n, dtype=bool)
    scores = np.zeros(n, dtype=np.float32)
    paths = [str(UTKFACE_DIR / "images" / r["file"]) for r in rows]
    start = time.time()
    with mp.get_context("fork").Pool(
        workers, initializer=_init_worker, initargs=(size, scales)
    ) as pool:
        for i, (crop, found, score) in enumerate(pool.imap(_crop_one, paths, chunksize=32)):
            crops[i] = crop
            detected[i], scores[i] = found, score
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
    (out / "files.txt").write_text("\n".join(r["file"] for r in rows) + "\n")
    meta = {
        "dataset": str(UTKFACE_DIR),
        "size": size,
        "scales": list(scales),
        "color_order": "bgr",
        "detector": "retinaface (faceage default settings), best-scoring face",
        "fallback": "faceage.alignment.crop_landmarks (chip treated as an aligned crop)",
        "images": n,
        "seconds": round(time.time() - start, 1),
        "per_split": {
            split: {
                "images": int((np.array([r["split"] for r in rows]) == split).sum()),
                "not_detected": int(
                    sum(1 for r, d in zip(rows, detected) if r["split"] == split and not d)
                ),
            }
            for split in SPLITS
        },
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


@dataclass
class CropSet:
    """One split of a cache: crops ``(N, K, S, S, 3)`` uint8 BGR plus labels."""

    crops: np.ndarray
    ages: np.ndarray
    genders: np.ndarray
    detected: np.ndarray


def load_split(
    split: str,
    size: int = 64,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    *,
    in_memory: bool = True,
) -> CropSet:
    """A split of the cache (built first if missing)."""
    root = cache_dir(size, scales)
    if not (root / "meta.json").exists():
        raise FileNotFoundError(
            f"no crop cache at {root}; run: python -m training.data "
            f"--size {size} --scales {' '.join(map(str, scales))}"
        )
    index = np.flatnonzero(np.load(root / "splits.npy") == SPLITS.index(split))
    crops = np.load(root / "crops.npy", mmap_mode="r")
    picked = crops[index] if in_memory else crops  # fancy indexing reads into memory
    return (
        CropSet(
            crops=picked if in_memory else crops,
            ages=np.load(root / "ages.npy")[index],
            genders=np.load(root / "genders.npy")[index],
            detected=np.load(root / "detected.npy")[index],
        )
        if in_memory
        else CropSet(
            crops=crops,
            ages=np.load(root / "ages.npy"),
            genders=np.load(root / "genders.npy"),
            detected=np.load(root / "detected.npy"),
        )
    )


def cache_meta(size: int = 64, scales: tuple[float, ...] = DEFAULT_SCALES) -> dict:
    return json.loads((cache_dir(size, scales) / "meta.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--scales", type=float, nargs="+", default=list(DEFAULT_SCALES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N images (smoke test)")
    args = parser.parse_args()
    out = build_cache(args.size, tuple(args.scales), workers=args.workers, limit=args.limit)
    print(json.dumps(json.loads((out / "meta.json").read_text()), indent=2))


if __name__ == "__main__":
    main()
