"""The registry: manifest parsing and validation, bundled weights, import hygiene."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import faceage
from faceage.errors import ModelSpecError, UnknownModelError
from faceage.spec import load_manifest, parse_manifest, parse_model_spec

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted(load_manifest().models)


def test_package_manifest_is_the_root_manifest() -> None:
    packaged = resources.files("faceage").joinpath("weights_manifest.json").read_bytes()
    assert packaged == (ROOT / "weights_manifest.json").read_bytes()


def test_list_models_matches_the_manifest() -> None:
    assert [spec.name for spec in faceage.list_models()] == MODELS


def test_unknown_model_lists_the_valid_names() -> None:
    with pytest.raises(UnknownModelError, match="choose one of") as info:
        load_manifest().model("no-such-model")
    for name in MODELS:
        assert name in str(info.value)


def _raw_models() -> dict[str, Any]:
    models: dict[str, Any] = json.loads((ROOT / "weights_manifest.json").read_text())["models"]
    return models


@pytest.mark.parametrize(
    "name", [n for n, e in _raw_models().items() if "quantized_from" in e] or ["(none)"]
)
def test_int8_models_are_built_from_the_current_float32_file(name: str) -> None:
    """A retrained model makes its shipped int8 variant stale: re-run the quantizer."""
    if name == "(none)":
        pytest.skip("no int8 model is shipped")
    models = _raw_models()
    source = models[name]["quantized_from"]
    assert models[source["model"]]["file"]["sha256"] == source["sha256"], (
        f"{name} was quantized from an older {source['model']}: "
        f"run python -m benchmarks.quantize --models {source['model']} --ship"
    )
    assert models[name]["input"] == models[source["model"]]["input"]
    assert models[name]["output"] == models[source["model"]]["output"]


@pytest.mark.parametrize("name", MODELS)
def test_bundled_weights_match_their_pinned_sha256(name: str) -> None:
    spec = load_manifest().model(name)
    assert spec.file.sha256, f"{name} pins no sha256"
    if not spec.file.bundled:
        pytest.skip(f"{name} is downloaded, not bundled")
    data = resources.files("faceage").joinpath("weights", spec.file.filename).read_bytes()
    assert hashlib.sha256(data).hexdigest() == spec.file.sha256
    assert len(data) == spec.file.size


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "task": "age",
        "file": {"filename": "m.onnx", "sha256": "0" * 64},
        "input": {"size": 64, "crop_scales": [1.0]},
        "output": {"age": "age"},
    }
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    "entry, message",
    [
        (_entry(task="height"), "task"),
        (_entry(file={"filename": "../evil.onnx"}), "plain file name"),
        (_entry(file={"filename": "m.onnx", "sha256": "abc"}), "sha256"),
        (_entry(input={"size": 4}), "input.size"),
        (_entry(input={"size": 64, "crop_scales": []}), "crop_scales"),
        (_entry(input={"size": 64, "std": [1, 0, 1]}), "std"),
        (_entry(task="age+gender"), "output.gender"),
        (_entry(age_range=[50, 10]), "age_range"),
        (_entry(input="64"), "objects"),
    ],
)
def test_invalid_specs_are_refused(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelSpecError, match=message):
        parse_model_spec("x", entry)


def test_manifest_schema_version_is_checked() -> None:
    with pytest.raises(ModelSpecError, match="schema_version"):
        parse_manifest({"schema_version": 99, "models": {}})


def test_import_is_light_and_never_imports_torch() -> None:
    code = (
        "import sys, faceage; faceage.__version__; "
        "print(sorted(m for m in ('torch', 'onnxruntime', 'cv2') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
