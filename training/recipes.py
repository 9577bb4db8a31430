"""Where a recipe's pieces live: configs, results, runs, the shipped weights, and files
as they were committed.

Every stage of ``training/`` reads its config and paths from here, so the stages form a
line (data set -> crops -> fit -> export -> card) and none imports another back.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from training.datasets import REPO_ROOT

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RUNS_DIR = REPO_ROOT / "runs"
WEIGHTS_DIR = REPO_ROOT / "faceage" / "weights"
MANIFEST = REPO_ROOT / "weights_manifest.json"


def load_config(name: str) -> dict[str, Any]:
    path = CONFIG_DIR / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise SystemExit(f"no config {path}; known: {', '.join(known)}")
    config = json.loads(path.read_text())
    config["name"] = name
    return config


def train_command(config: dict[str, Any], name: str) -> str:
    """The shell command that trains ``name``, earlier stages (``init_from``) first."""
    command = f"python -m training.train {name}"
    if config.get("init_from"):
        return (
            f"{train_command(load_config(config['init_from']), config['init_from'])} && {command}"
        )
    return command


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


def onnx_file(spec: str) -> tuple[str, bytes]:
    """The model name and ONNX bytes of ``NAME`` (the shipped file) or ``NAME@COMMIT`` (the
    file as committed in ``COMMIT``, read with ``git show``: a run that starts from or
    distils from a model it will replace replays with the same bytes)."""
    name, _, commit = spec.partition("@")
    path = WEIGHTS_DIR / f"{name}.onnx"
    if not commit:
        return name, path.read_bytes()
    try:
        return name, committed_file(path.relative_to(REPO_ROOT).as_posix(), commit)
    except ValueError as exc:
        raise ValueError(f"{spec!r}: {exc}") from None
