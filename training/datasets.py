"""The labelled face data sets training can read, as data: where each lies and how to
read its labels.

A config names the mixture it trains on, ``"datasets": {"utkface": 1.0, "aaf": 1.0}``;
each weight is how many times per epoch the set's training faces are drawn (1.0: every
face once; 0.5: a fresh random half each epoch; 2.0: every face twice). Without
``"datasets"`` a config trains on UTKFace alone, as every model did before.

Every set's ``labels.csv`` has ``file``, ``age``, ``gender`` (0 male, 1 female) and a
fixed ``split`` (train / val / test); ``race`` is read where the set has it.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI and every session check out the repository beside ../shared
DATASETS_ROOT = Path(os.environ.get("FACEAGE_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Dataset:
    """One labelled data set.

    Attributes:
        name: registry key, also the prefix of its crop caches.
        folder: the set's folder under ``DATASETS_ROOT``, holding ``images/`` and the labels.
        labelled_face: which detected face the label belongs to: ``"best"`` (highest
            detection score; UTKFace's chips hold one face) or ``"centre"`` (nearest the
            image centre; AAF's loose crops can show a second person at the edge).
        when_no_face: ``"chip"`` treats the image as an aligned crop (UTKFace's chips are
            aligned by their authors), ``"drop"`` leaves the face out of training and
            validation (a loose crop is not a face crop).
        description: one line for results and model cards.
    """

    name: str
    folder: str
    labelled_face: Literal["best", "centre"]
    when_no_face: Literal["chip", "drop"]
    description: str
    labels_file: str = "labels.csv"

    @property
    def root(self) -> Path:
        return DATASETS_ROOT / self.folder

    @property
    def images(self) -> Path:
        return self.root / "images"

    def read_labels(self) -> list[dict[str, str]]:
        """Every row of the labels file, in its order, with ``race`` ("" where absent)."""
        with open(self.root / self.labels_file, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            row.setdefault("race", "")
            if row["split"] not in SPLITS:
                raise ValueError(f"{self.name}: {row['file']} has split {row['split']!r}")
        return rows


DATASETS: dict[str, Dataset] = {
    "utkface": Dataset(
        name="utkface",
        folder="utkface",
        labelled_face="best",
        when_no_face="chip",
        description="UTKFace: 200x200 chips aligned by their authors, ages 1-116, mixed races",
    ),
    "aaf": Dataset(
        name="aaf",
        folder="aaf",
        labelled_face="centre",
        when_no_face="drop",
        description="All-Age-Faces (cleaned): ~300x340 loose crops, mostly East Asian, ages 2-80",
    ),
}


def get_dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def mixture(config: dict) -> dict[str, float]:
    """The config's ``{data set: sampling weight}`` (UTKFace alone when it names none)."""
    chosen = config.get("datasets") or {"utkface": 1.0}
    for name, weight in chosen.items():
        get_dataset(name)
        if not weight > 0:
            raise ValueError(f"data set {name!r} has sampling weight {weight}; use > 0")
    return dict(chosen)
