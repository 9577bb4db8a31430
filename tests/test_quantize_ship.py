"""``benchmarks.quantize.ship`` acts only on the models a run measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import quantize


def _write_manifest(path: Path) -> None:
    data = {
        "models": {
            "kept": {"file": {"filename": "kept.onnx", "sha256": "0" * 64, "size": 1}},
            "kept-int8": {"file": {"filename": "kept-int8.onnx", "sha256": "1" * 64, "size": 1}},
            "dropped": {"file": {"filename": "dropped.onnx", "sha256": "2" * 64, "size": 1}},
            "dropped-int8": {
                "file": {"filename": "dropped-int8.onnx", "sha256": "3" * 64, "size": 1}
            },
        }
    }
    path.write_text(json.dumps(data), encoding="utf-8")


def test_a_part_run_leaves_the_other_models_int8_files_alone(tmp_path: Path) -> None:
    manifest = tmp_path / "weights_manifest.json"
    _write_manifest(manifest)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "kept-int8.onnx").write_bytes(b"int8")
    (weights / "dropped-int8.onnx").write_bytes(b"int8")
    results = {
        "command": "python -m benchmarks.quantize --models dropped --ship",
        "machine": "test",
        "models": {
            # kept from an earlier run: qualifies, but its int8 file is not on this machine
            "kept": {"qualifying_variant": "qdq", "int8_file": "not/here/kept-int8.onnx"},
            # measured now: no longer qualifies
            "dropped": {"qualifying_variant": None},
        },
    }

    assert quantize.ship(results, manifest, weights, ["dropped"]) == []

    models = json.loads(manifest.read_text(encoding="utf-8"))["models"]
    assert "kept-int8" in models and (weights / "kept-int8.onnx").exists()
    assert "dropped-int8" not in models and not (weights / "dropped-int8.onnx").exists()
    with pytest.raises(FileNotFoundError, match="kept-int8"):  # every model: the old crash
        quantize.ship(results, manifest, weights)


def _variant(speedup: float, val_mae: float, qualifies: bool = True) -> dict:
    return {"speedup": {"geomean": speedup}, "val_mae": val_mae, "qualifies": qualifies}


def test_the_fastest_qualifying_variant_is_chosen() -> None:
    variants = {
        "dynamic": _variant(3.0, 4.0, qualifies=False),  # fastest, but it does not qualify
        "qdq": _variant(1.5, 5.0),
        "qoperator": _variant(2.0, 5.05),
    }
    assert quantize.choose_variant(variants) == "qoperator"


def test_a_speed_tie_goes_to_the_lower_val_mae() -> None:
    # sephsrnet's case: 1.34x vs 1.35x is noise, 0.07 years is not
    variants = {"qdq": _variant(1.34, 5.81), "qoperator": _variant(1.35, 5.88)}
    assert quantize.choose_variant(variants) == "qdq"
    variants["qdq"] = _variant(1.20, 5.81)  # no longer a tie: the faster one wins
    assert quantize.choose_variant(variants) == "qoperator"


def test_nothing_is_chosen_when_nothing_qualifies() -> None:
    assert quantize.choose_variant({"qdq": _variant(1.1, 5.0, qualifies=False)}) is None
    assert quantize.choose_variant({}) is None
