"""The export's manifest entry: what it keeps of the previous entry and what it drops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from training import export


def _export(manifest: Path, sha256: str) -> dict:
    config = {
        "input_size": 64,
        "crop_scales": [1.0],
        "manifest": {"task": "age", "architecture": "a", "paper": "p", "description": "d"},
    }
    file_info = {"filename": "m.onnx", "sha256": sha256, "size": 10, "bundled": True}
    metrics = {"test": {"mae": 5.0}, "val": {"mae": 4.9}}
    export.update_manifest("m", config, file_info, 100, metrics, {"epochs": 3})
    return json.loads(manifest.read_text())["models"]["m"]


def test_same_bytes_keep_their_flip_and_figures_new_bytes_drop_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "weights_manifest.json"
    previous = {
        "architecture": "a",
        "file": {"sha256": "a" * 64},
        "flip": True,
        "metrics": {"utkface_test_pipeline": {"mae": 5.1}},
    }
    manifest.write_text(json.dumps({"models": {"m": previous}}))
    monkeypatch.setattr(export, "MANIFEST", manifest)
    same = _export(manifest, "a" * 64)
    assert same["flip"] is True
    assert same["metrics"]["utkface_test_pipeline"] == {"mae": 5.1}
    assert same["metrics"]["utkface_test"] == {"mae": 5.0}
    new = _export(manifest, "b" * 64)
    assert "flip" not in new  # chosen again on val for the new weights
    assert "utkface_test_pipeline" not in new["metrics"]


def test_a_mixture_records_each_sets_figures_and_licence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "weights_manifest.json"
    manifest.write_text(json.dumps({"models": {}}))
    monkeypatch.setattr(export, "MANIFEST", manifest)
    config = {
        "input_size": 64,
        "crop_scales": [1.0],
        "datasets": {"utkface": 1.0, "aaf": 1.0},
        "manifest": {"task": "age", "architecture": "a", "paper": "p", "description": "d"},
    }
    per_set = {"utkface": {"mae": 5.0}, "aaf": {"mae": 4.4}}
    metrics = {
        split: {"mae": 4.8, "by_dataset": {k: {**v, "split": split} for k, v in per_set.items()}}
        for split in ("test", "val")
    }
    file_info = {"filename": "m.onnx", "sha256": "c" * 64, "size": 10, "bundled": True}
    export.update_manifest("m", config, file_info, 100, metrics, {"epochs": 3})
    entry = json.loads(manifest.read_text())["models"]["m"]
    assert entry["metrics"]["aaf_test"] == {"mae": 4.4, "split": "test"}
    assert entry["metrics"]["utkface_val"] == {"mae": 5.0, "split": "val"}
    assert entry["metrics"]["trained_on"] == ["utkface", "aaf"]
    assert "UTKFace and All-Age-Faces" in entry["license"]
