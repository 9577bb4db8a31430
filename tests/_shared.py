"""Where the tests find ../shared (UTKFace faces, YuNet files): beside the repo checkout."""

from __future__ import annotations

import csv
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
UTKFACE = SHARED / "datasets" / "utkface"
YUNET_DIR = SHARED / "models" / "yunet"


def utkface_rows(split: str = "test", limit: int | None = None) -> list[dict[str, str]]:
    """Rows of UTKFace's labels.csv for one split, in file order."""
    with open(UTKFACE / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["split"] == split]
    return rows[:limit] if limit else rows


def utkface_image(row: dict[str, str]) -> Path:
    return UTKFACE / "images" / row["file"]
