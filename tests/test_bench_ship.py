"""benchmarks.quantize's ship step: bundling a qualifying int8 file as NAME-int8."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

quantize = pytest.importorskip("benchmarks.quantize")


def _results(int8_file: Path | None) -> dict:
    measured = {"mae": 6.1, "cs5": 0.5, "mae_delta": 0.02, "speedup": {"geomean": 1.5}}
    report = {
        "fp32": {"sha256": "a" * 64},
        "variants": {"qdq": measured},
        "qualifying_variant": "qdq" if int8_file else None,
        "command": "python -m benchmarks.quantize --models m",
    }
    if int8_file:
        report["int8_file"] = str(int8_file)
    return {"machine": "test", "command": "c", "models": {"m": report}}


def test_ship_adds_keeps_and_removes_the_int8_model(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    source = {"task": "age", "file": {"filename": "m.onnx", "sha256": "a" * 64, "size": 3}}
    source |= {"input": {"size": 64}, "output": {"age": "age"}, "metrics": {"x": 1}}
    manifest.write_text(json.dumps({"models": {"m": source}}))
    int8 = tmp_path / "m-int8-qdq.onnx"
    int8.write_bytes(b"int8 bytes")
    weights = tmp_path / "weights"
    weights.mkdir()

    assert quantize.ship(_results(int8), manifest, weights) == ["m-int8"]
    entry = json.loads(manifest.read_text())["models"]["m-int8"]
    assert (weights / "m-int8.onnx").read_bytes() == b"int8 bytes"
    assert entry["file"]["sha256"] == hashlib.sha256(b"int8 bytes").hexdigest()
    assert entry["quantized_from"] == {"model": "m", "sha256": "a" * 64, "variant": "qdq"}
    assert "x" not in entry["metrics"] and entry["metrics"]["utkface_test_quantize"]["mae"] == 6.1

    # figures measured elsewhere survive a re-ship of the same bytes
    data = json.loads(manifest.read_text())
    data["models"]["m-int8"]["metrics"]["utkface_test_pipeline"] = {"mae": 6.2}
    manifest.write_text(json.dumps(data))
    quantize.ship(_results(int8), manifest, weights)
    kept = json.loads(manifest.read_text())["models"]["m-int8"]["metrics"]
    assert kept["utkface_test_pipeline"] == {"mae": 6.2}

    # no longer qualifying: entry and file go
    assert quantize.ship(_results(None), manifest, weights) == []
    assert "m-int8" not in json.loads(manifest.read_text())["models"]
    assert not (weights / "m-int8.onnx").exists()
