"""Export a trained model to ONNX under faceage's contract and register it.

    python -m training.export c3ae

- graph: input ``input`` float32 ``(N, 3, S, S)`` or ``(N, K, 3, S, S)`` of RGB pixels
  ``(x / 255 - mean) / std``; output ``age`` ``(N,)`` in years clipped to [0, 116] and,
  for joint models, ``gender`` ``(N,)`` = P(female); opset 17; dynamic batch axis;
- parity: 256 val faces normalised in numpy exactly as the contract says must give
  ages within 0.01 years (and gender within 1e-3) of PyTorch's;
- writes ``faceage/weights/NAME.onnx``, evaluates it with onnxruntime on the cached val
  and test crops, adds that to ``training/results/NAME.json`` and updates the model's
  entry in the ``models`` section of ``weights_manifest.json`` (never ``detectors``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from benchmarks.common import dump_manifest
from training.datasets import mixture
from training.models import ExportGraph, build_model, count_params
from training.onnx_io import MEAN, STD, contract_inputs, run_onnx
from training.onnx_weights import store_weights_as_float16
from training.recipes import (
    MANIFEST,
    RESULTS_DIR,
    RUNS_DIR,
    WEIGHTS_DIR,
    load_config,
    train_command,
)
from training.splits import CachedSplit, metrics
from training.warm_start import load_onnx_weights

OPSET = 17
PARITY_FACES = 256
MAX_AGE_DIFF = 0.01
MAX_GENDER_DIFF = 1e-3
LICENSES = {
    "utkface": "UTKFace",
    "aaf": "All-Age-Faces",
}
REVISION = "v0.1.0"


def load_trained(name: str, *, from_onnx_if_gone: bool = False) -> torch.nn.Module:
    """The chosen checkpoint of ``runs/NAME``. With ``from_onnx_if_gone``, a run whose
    checkpoints are gone (they are not committed) gives the weights of its committed
    ``faceage/weights/NAME.onnx`` instead: exact in eval mode (``training.warm_start``),
    and the export's parity check covers them as usual."""
    config = load_config(name)
    model = build_model(config["architecture"])
    checkpoint = RUNS_DIR / name / "best.pt"
    if checkpoint.exists() or not from_onnx_if_gone:
        model.load_state_dict(torch.load(checkpoint, weights_only=False)["model"])
    else:
        size = config["input_size"]
        example = torch.zeros(2, len(config["crop_scales"]), 3, size, size)
        load_onnx_weights(model, (WEIGHTS_DIR / f"{name}.onnx").read_bytes(), example)
        print(f"{name}: no {checkpoint}; weights from faceage/weights/{name}.onnx", flush=True)
    return model.to(memory_format=torch.contiguous_format).eval()


def build_graph(name: str, config: dict[str, Any]) -> tuple[ExportGraph, int]:
    export = config.get("export", {})
    if "age_from" in export:  # a gender-only net packed with the age net it serves
        age_model = load_trained(export["age_from"], from_onnx_if_gone=True)
        gender_model = load_trained(name)
        graph = ExportGraph(age_model, gender_model)
        return graph.eval(), count_params(age_model) + count_params(gender_model)
    model = load_trained(name)
    graph = ExportGraph(model, with_gender=config["manifest"]["task"] == "age+gender")
    return graph.eval(), count_params(model)


def to_onnx(graph: torch.nn.Module, dummy: torch.Tensor, path: Any, output_names: list[str]):
    """The export call itself (TorchScript exporter: BatchNorm folded into the convolutions)."""
    torch.onnx.export(
        graph,
        (dummy,),
        path,
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=output_names,
        dynamic_axes={n: {0: "batch"} for n in ["input", *output_names]},
        do_constant_folding=True,
    )


def export(name: str) -> dict[str, Any]:
    config = load_config(name)
    task = config["manifest"]["task"]
    num_crops = len(config["crop_scales"])
    graph, params = build_graph(name, config)
    output_names = ["age", "gender"] if task == "age+gender" else ["age"]

    val, test = CachedSplit(config, "val"), CachedSplit(config, "test")
    parity_x = contract_inputs(val.crops[:PARITY_FACES], num_crops)
    path = WEIGHTS_DIR / f"{name}.onnx"
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    dummy = torch.from_numpy(parity_x[:2])
    to_onnx(graph, dummy, str(path), output_names)
    model_proto = onnx.load(str(path))
    weights_dtype = config.get("export", {}).get("weights_dtype", "float32")
    if weights_dtype == "float16":
        store_weights_as_float16(model_proto, op_types=config["export"].get("float16_ops"))
    onnx.checker.check_model(model_proto)
    model_proto.producer_name = "faceage-training"
    onnx.save(model_proto, str(path))

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        reference = graph(torch.from_numpy(parity_x))
        ref_age = (reference[0] if isinstance(reference, tuple) else reference).numpy()
    # float16-stored weights must pass the same check against the float32 PyTorch model
    onnx_age, onnx_gender = run_onnx(session, parity_x)
    age_diff = float(np.abs(onnx_age - ref_age).max())
    gender_diff = 0.0
    if task == "age+gender":
        gender_diff = float(np.abs(onnx_gender - reference[1].numpy()).max())
    if age_diff > MAX_AGE_DIFF or gender_diff > MAX_GENDER_DIFF:
        raise SystemExit(
            f"parity check failed for {name}: max |age diff| {age_diff:.5f} years, "
            f"max |gender diff| {gender_diff:.6f} (weights stored as {weights_dtype})"
        )

    onnx_metrics = {}
    for split, data in (("val", val), ("test", test)):
        ages, genders = run_onnx(session, contract_inputs(data.crops, num_crops))
        onnx_metrics[split] = metrics(data, ages, genders)
    blob = path.read_bytes()
    file_info = {
        "filename": path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        "bundled": True,
        "repo_id": f"faceage/{name}",
        "revision": REVISION,
    }

    results_path = RESULTS_DIR / f"{name}.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"name": name}
    results["export"] = {
        "opset": OPSET,
        "weights_dtype": weights_dtype,
        "file": file_info,
        "params": params,
        "parity": {
            "faces": PARITY_FACES,
            "max_abs_age_diff_years": age_diff,
            "max_abs_gender_diff": gender_diff,
        },
        "onnxruntime_metrics": onnx_metrics,
    }
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    update_manifest(name, config, file_info, params, onnx_metrics, results)
    print(json.dumps(results["export"], indent=2))
    return results


def update_manifest(
    name: str,
    config: dict[str, Any],
    file_info: dict[str, Any],
    params: int,
    onnx_metrics: dict[str, Any],
    results: dict[str, Any],
) -> None:
    info = config["manifest"]
    output = {"age": "age"}
    if info["task"] == "age+gender":
        output["gender"] = "gender"
    datasets = list(mixture(config))
    names = " and ".join(LICENSES[d] for d in datasets)
    entry = {
        "task": info["task"],
        "architecture": info["architecture"],
        "paper": info["paper"],
        "description": info["description"],
        "license": f"Weights trained on {names}: non-commercial research only (their terms)",
        "params": params,
        "file": file_info,
        "input": {
            "name": "input",
            "size": config["input_size"],
            "crop_scales": config["crop_scales"],
            "color_order": "rgb",
            "mean": list(MEAN),
            "std": list(STD),
        },
        "output": output,
        "age_range": [0, 116],
        "metrics": {
            **{
                f"{dataset}_{split}": _one_set(onnx_metrics[split], dataset)
                for dataset in datasets
                for split in ("test", "val")
            },
            "trained_on": datasets,
            "protocol": (
                "onnxruntime on faceage's own crops of each data set's fixed test split "
                "(RetinaFace + context_crops, training/data.py); model chosen on val"
            ),
            "epochs": results.get("epochs"),
            "command": f"{train_command(config, name)} && python -m training.export {name}",
        },
    }
    data = json.loads(MANIFEST.read_text())
    previous = data.setdefault("models", {}).get(name, {})
    if previous.get("file", {}).get("sha256") == file_info["sha256"]:
        # same bytes: keep figures measured elsewhere (e.g. benchmarks' full-pipeline run)
        for key, value in previous.get("metrics", {}).items():
            entry["metrics"].setdefault(key, value)
        if "flip" in previous:  # new weights get theirs from their own val run
            entry["flip"] = previous["flip"]
    elif "speed" in previous.get("metrics", {}) and all(
        previous.get(key) == entry[key] for key in ("architecture", "params", "input")
    ):
        # new weights in the same graph run at the same speed; accuracy is re-measured
        entry["metrics"]["speed"] = previous["metrics"]["speed"]
    data["models"][name] = entry
    MANIFEST.write_text(dump_manifest(data))


def _one_set(figures: dict[str, Any], dataset: str) -> dict[str, Any]:
    """One data set's figures of a split (the split's own when it holds one set only)."""
    if "by_dataset" in figures:
        return figures["by_dataset"][dataset]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description="Export a trained model to faceage/weights.")
    parser.add_argument("name")
    export(parser.parse_args().name)


if __name__ == "__main__":
    main()
