"""Tiny ONNX age models built in tests, standing in for real weights.

``age = 20 + 30 * mean(input)`` over the normalised pixels, so a brighter crop is
"older"; with ``gender=True`` a second output ``gender = sigmoid(4 * mean)`` is
P(female). Each model lives in a directory with ``model.onnx`` + ``faceage.json``,
the shape ``AgeEstimator.from_pretrained(directory)`` and ``faceage --model DIR`` take.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TINY_INPUT_SIZE = 64


def build_tiny_age_onnx(
    *, gender: bool = False, num_crops: int = 1, size: int = TINY_INPUT_SIZE
) -> bytes:
    """Serialized ONNX graph: ``input`` float32 ``(N,3,S,S)`` (or ``(N,K,3,S,S)``) -> ``age``."""
    if num_crops == 1:
        shape: list[Any] = ["N", 3, size, size]
        axes = [1, 2, 3]
    else:
        shape = ["N", num_crops, 3, size, size]
        axes = [1, 2, 3, 4]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)]
    outputs = [helper.make_tensor_value_info("age", TensorProto.FLOAT, ["N"])]
    initializers = [
        numpy_helper.from_array(np.array(30.0, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(20.0, dtype=np.float32), "offset"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=axes, keepdims=0),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["age"]),
    ]
    if gender:
        initializers.append(numpy_helper.from_array(np.array(4.0, dtype=np.float32), "steep"))
        nodes += [
            helper.make_node("Mul", ["mean", "steep"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["gender"]),
        ]
        outputs.append(helper.make_tensor_value_info("gender", TensorProto.FLOAT, ["N"]))
    graph = helper.make_graph(nodes, "tiny_age", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def tiny_spec_dict(
    name: str = "tiny", *, gender: bool = False, num_crops: int = 1, size: int = TINY_INPUT_SIZE
) -> dict[str, Any]:
    """The ``faceage.json`` of a tiny model."""
    scales = [1.0] if num_crops == 1 else [1.0 + 0.25 * k for k in range(num_crops)]
    output: dict[str, str] = {"age": "age"}
    if gender:
        output["gender"] = "gender"
    return {
        "name": name,
        "task": "age+gender" if gender else "age",
        "file": {"filename": "model.onnx"},
        "input": {
            "size": size,
            "crop_scales": scales,
            "color_order": "rgb",
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
            "name": "input",
        },
        "output": output,
        "age_range": [0, 116],
    }


def tiny_age_interval() -> dict[str, Any]:
    """A valid ``age_interval`` block (made up, not fitted): intervals widen with the
    age and, with flip, with the gap between a face and its mirror image."""

    def table(scale: dict[str, float]) -> dict[str, Any]:
        return {
            "scale": scale,
            "age_edges": [18.0, 45.0],
            "levels": [0.5, 0.8, 0.9, 0.99],
            "low": [[-0.5, -1.2, -1.6, -2.5], [-0.7, -1.3, -1.8, -3.0], [-0.6, -1.5, -2.2, -4.0]],
            "high": [[0.6, 1.4, 1.9, 3.0], [0.5, 1.2, 1.7, 2.8], [0.8, 1.8, 2.5, 4.5]],
            "rms": [1.0, 1.1, 1.4],
        }

    return {
        "fitted_on": "made up for the tests",
        "plain": table({"const": 0.5, "log_age": 0.4}),
        "flip": table({"const": 0.4, "log_age": 0.4, "log_flip_gap": 0.6}),
    }


def write_tiny_model(
    directory: str | Path,
    *,
    name: str = "tiny",
    gender: bool = False,
    num_crops: int = 1,
    age_interval: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.onnx`` + ``faceage.json`` (with ``age_interval`` if given) into
    ``directory`` and return it."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.onnx").write_bytes(build_tiny_age_onnx(gender=gender, num_crops=num_crops))
    spec = tiny_spec_dict(name, gender=gender, num_crops=num_crops)
    if age_interval is not None:
        spec["age_interval"] = age_interval
    (path / "faceage.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return path
