"""What several test modules share: where ../shared is (UTKFace faces, YuNet files:
beside the repo checkout), and how a session's spinning setting reads."""

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


def spinning_entry(session: object) -> str:
    """The ``session.intra_op.allow_spinning`` entry an onnxruntime session was made with."""
    options = session.get_session_options()  # type: ignore[attr-defined]
    return str(options.get_session_config_entry("session.intra_op.allow_spinning"))
