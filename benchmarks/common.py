"""What the benchmarks share: where the data is, the machine they ran on, output files."""

from __future__ import annotations

import csv
import json
import os
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceage.results import Face, ImageResult

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
UTKFACE = SHARED / "datasets" / "utkface"
AAF = SHARED / "datasets" / "aaf"
RESULTS_DIR = ROOT / "benchmarks" / "results"
MANIFEST = ROOT / "weights_manifest.json"


@dataclass(frozen=True)
class Row:
    file: str
    age: int
    gender: int  # 0 male, 1 female (UTKFace's convention)
    race: str  # "0".."4", or "" where the file name has none
    split: str
    dataset: str = "utkface"

    @property
    def path(self) -> Path:
        """Where the image lies under ``../shared/datasets``."""
        return DATASET_DIRS[self.dataset] / "images" / self.file


# Every labelled data set the benchmarks read: labels.csv with file, age, gender
# (0 male, 1 female), split and, for UTKFace only, race.
DATASET_DIRS = {"utkface": UTKFACE, "aaf": AAF}


def read_dataset(name: str, split: str) -> list[Row]:
    """Rows of one split of a data set (``utkface`` or ``aaf``), in labels.csv order."""
    if name not in DATASET_DIRS:
        raise ValueError(f"unknown data set {name!r}; choose from {sorted(DATASET_DIRS)}")
    with open(DATASET_DIRS[name] / "labels.csv", newline="", encoding="utf-8") as handle:
        return [
            Row(r["file"], int(r["age"]), int(r["gender"]), r.get("race", ""), r["split"], name)
            for r in csv.DictReader(handle)
            if r["split"] == split
        ]


def read_utkface(split: str) -> list[Row]:
    """UTKFace rows of one split, in the order of labels.csv."""
    return read_dataset("utkface", split)


def labelled_face(result: ImageResult, row: Row) -> Face | None:
    """The face a row's label belongs to: the best-scored one on UTKFace's chips, the one
    nearest the image centre on All-Age-Faces' loose crops (which can show a second
    person at the edge); None where no face was found."""
    if not result.faces:
        return None
    if row.dataset == "utkface" or result.width is None or result.height is None:
        return result.faces[0]
    cx, cy = result.width / 2, result.height / 2

    def distance(face: Face) -> float:
        x1, y1, x2, y2 = face.box
        return ((x1 + x2) / 2 - cx) ** 2 + ((y1 + y2) / 2 - cy) ** 2

    return min(result.faces, key=distance)


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {cpu}, {platform.system()} {platform.machine()}"


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def commands(results: dict[str, Any]) -> str:
    """The command(s) that measured the models in ``results`` (subsets are merged)."""
    seen = dict.fromkeys(r.get("command", results["command"]) for r in results["models"].values())
    return " and ".join(f"`{c}`" for c in seen or [results["command"]])


def signed(value: float | None, digits: int) -> str:
    """``value`` with its sign (``+0.02``), or an empty table cell where it is missing."""
    return "" if value is None else f"{value:+.{digits}f}"


def manifest_models() -> dict[str, Any]:
    """The manifest's ``models`` section as plain JSON (with keys ``ModelSpec`` leaves out)."""
    models: dict[str, Any] = json.loads(MANIFEST.read_text(encoding="utf-8"))["models"]
    return models


def edit_entries(
    names: Iterable[str], edit: Callable[[str, dict[str, Any]], None], path: Path = MANIFEST
) -> None:
    """Call ``edit(name, entry)`` on the manifest entry of each of ``names`` that is a
    registered model or ensemble (others are skipped), then write the manifest back."""
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for name in names:
        for section in ("models", "ensembles"):
            if name in manifest.get(section, {}):
                edit(name, manifest[section][name])
    path.write_text(dump_manifest(manifest), encoding="utf-8")


def dump_manifest(manifest: dict[str, Any]) -> str:
    """The manifest as JSON with 2-space indents, except that the number lists of each
    ``age_interval`` block stay on one line (a table per line, not a number per line)."""
    compact: dict[str, str] = {}

    def squeeze(node: Any, inside: bool) -> Any:
        if isinstance(node, dict):
            return {k: squeeze(v, inside or k == "age_interval") for k, v in node.items()}
        if inside and isinstance(node, list):
            if all(isinstance(v, (int, float)) for v in node):
                key = f"@compact{len(compact)}@"
                compact[key] = json.dumps(node)
                return key
            return [squeeze(v, inside) for v in node]
        return node

    text = json.dumps(squeeze(manifest, False), indent=2) + "\n"
    for key, value in compact.items():
        text = text.replace(f'"{key}"', value)
    return text


def record_metrics(key: str, entries: dict[str, dict[str, Any]]) -> None:
    """Write ``entries[name]`` as ``metrics[key]`` of each registered model (or ensemble)
    in the manifest."""

    def put(name: str, entry: dict[str, Any]) -> None:
        entry.setdefault("metrics", {})[key] = entries[name]

    edit_entries(entries, put)
