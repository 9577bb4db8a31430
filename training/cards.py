"""Write ``training/cards/NAME.md`` from the config, results and export of one model.

    python -m training.cards c3ae

Numbers come only from ``training/results/NAME.json`` (written by train and export), so
a card never says what was not measured. Architecture choices and what was tried
live in ``training/cards/choices/NAME.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.card_recipe import fmt, recipe_lines
from training.datasets import REPO_ROOT
from training.models import ARCHITECTURES
from training.recipes import RESULTS_DIR, load_config, train_command

CARDS_DIR = Path(__file__).resolve().parent / "cards"

CHOICES_DIR = CARDS_DIR / "choices"


def choices(name: str) -> str:
    """The card's prose on choices where the paper is vague, and on what was tried:
    ``training/cards/choices/NAME.md``, written by hand."""
    path = CHOICES_DIR / f"{name}.md"
    return path.read_text().rstrip() if path.exists() else "- none"


def _pipeline_section(name: str) -> list[str]:
    """The full-pipeline test figures ``benchmarks.accuracy --update-manifest`` recorded,
    and the default flip its val run chose."""
    manifest = json.loads((REPO_ROOT / "weights_manifest.json").read_text())
    model = manifest["models"].get(name, {})
    entry = model.get("metrics", {}).get("utkface_test_pipeline")
    if not entry:
        return []
    lines = [
        "## Results through the full faceage pipeline (UTKFace test)",
        "",
        "| MAE | median AE | CS(5) | MAE with flip | gender accuracy | gender with flip "
        "| no face found |",
        "|---|---|---|---|---|---|---|",
        f"| {fmt(entry.get('mae'))} | {fmt(entry.get('median_ae'))} | "
        f"{fmt(entry.get('cs5'), 3)} | {fmt(entry.get('mae_flip'))} | "
        f"{fmt(entry.get('gender_accuracy'), 3)} | {fmt(entry.get('gender_accuracy_flip'), 3)} "
        f"| {100 * entry.get('no_face_share', 0):.2f}% |",
        "",
        f"Measured by `{entry.get('command')}` on {entry.get('machine')}: {entry.get('protocol')}.",
        "",
    ]
    val = model.get("metrics", {}).get("utkface_val_pipeline")
    if val and "mae_flip" in val:
        gender = (
            f", gender {100 * val['gender_accuracy']:.1f}% -> "
            f"{100 * val['gender_accuracy_flip']:.1f}%"
            if "gender_accuracy_flip" in val
            else ""
        )
        lines += [
            f"Flip by default: **{'on' if model.get('flip') else 'off'}**, chosen on val "
            f"(`{val.get('command')}`): with flip, val MAE {val['mae']:.3f} -> "
            f"{val['mae_flip']:.3f}{gender}.",
            "",
        ]
    return lines


def _speed_section(name: str) -> list[str]:
    """Latency and throughput of the shipped file, as ``benchmarks.speed`` measured them."""
    path = REPO_ROOT / "benchmarks" / "results" / "speed.json"
    speed = json.loads(path.read_text()) if path.exists() else {}
    entry = speed.get("models", {}).get(name)
    if not entry:
        return []
    one, two = entry["threads"]["1"], entry["threads"]["2"]
    return [
        "## Speed (onnxruntime, CPU)",
        "",
        "| MMACs/face | ms/face b=1, 1 thread | ms/face b=1, 2 threads "
        "| faces/s b=32, 2 threads | faces/s b=64, 2 threads |",
        "|---|---|---|---|---|",
        f"| {entry['macs_per_face'] / 1e6:.1f} | {one['latency_ms_batch1']:.2f} | "
        f"{two['latency_ms_batch1']:.2f} | {two['faces_per_s_batch32']:.0f} | "
        f"{two['faces_per_s_batch64']:.0f} |",
        "",
        f"Measured by `{entry.get('command', speed.get('command'))}` on {speed.get('machine')}.",
        "",
    ]


def write_card(name: str) -> Path:
    results = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    # the config of the run that made the shipped weights, not a later run's edits
    config = results.get("config") or load_config(name)
    export = results.get("export", {})
    info = config["manifest"]
    metrics = results.get("metrics", {})
    onnx_metrics = export.get("onnxruntime_metrics", {})
    meta = results["data"]["crop_cache"]
    per_split = meta["per_split"]
    file_info = export.get("file", {})
    paper_params = ARCHITECTURES[config["architecture"]][1]
    lines = [
        f"# {name}",
        "",
        f"{info['description']}",
        "",
        f"- **Paper:** {info['paper']}",
        f"- **Architecture:** {info['architecture']}",
        f"- **Parameters:** {export.get('params', results['params']):,} "
        f"(paper: {paper_params:,} per net)",
        f"- **File:** `faceage/weights/{file_info.get('filename', name + '.onnx')}`, "
        f"{file_info.get('size', 0) / 1024:.1f} KiB, ONNX opset {export.get('opset', '?')}, "
        f"weights stored as {export.get('weights_dtype', 'float32')}, "
        f"sha256 `{file_info.get('sha256', '?')}`",
        f"- **Input:** `input` float32, {len(config['crop_scales'])} crop(s) of "
        f"{config['input_size']}x{config['input_size']} at scales {config['crop_scales']}, RGB, "
        "(x/255 - 0.5) / 0.5",
        "- **Output:** `age` in years clipped to [0, 116]"
        + (", `gender` = P(female)" if info["task"] == "age+gender" else ""),
        "- **Licence:** weights trained on UTKFace: non-commercial research only (UTKFace terms).",
        "",
        "## Choices where the paper is vague",
        "",
        choices(name),
        "",
        "## Data",
        "",
        "UTKFace aligned-and-cropped chips with the fixed split of `labels.csv`: "
        f"{per_split['train']['images']} train, {per_split['val']['images']} val, "
        f"{per_split['test']['images']} test. Trained on train, chosen on val (best epoch), "
        "evaluated once on test.",
        "",
        "Crops were made by faceage itself (`python -m training.data`): RetinaFace "
        "(default settings), best-scoring face, `faceage.alignment.context_crops` at "
        f"scales {meta['scales']}, {meta['size']} px. Detector failures: "
        f"{per_split['train']['not_detected']} train, {per_split['val']['not_detected']} val, "
        f"{per_split['test']['not_detected']} test images had no face found; they were "
        "cropped as if the chip were an aligned crop (`faceage.alignment.crop_landmarks`), "
        "and kept (test figures on detected faces only are in the results file).",
        "",
        "## Training",
        "",
        f"- `{train_command(config, name)}` then `python -m training.export {name}` "
        f"(config `training/configs/{name}.json`, seed {results['seed']}).",
        *recipe_lines(config, results),
        *(
            [f"- {results['seconds_per_epoch']} s per epoch (median) on 2 shared CPU cores."]
            if results.get("seconds_per_epoch")
            else []
        ),
        "",
        "## Results (UTKFace, faceage's cached crops)",
        "",
        "| split | MAE (years) | CS(5) | gender accuracy | evaluated with |",
        "|---|---|---|---|---|",
    ]
    for split in ("val", "test"):
        for source, table in (("PyTorch", metrics), ("onnxruntime", onnx_metrics)):
            row = table.get(split)
            if row:
                lines.append(
                    f"| {split} | {fmt(row.get('mae'))} | {fmt(row.get('cs5'), 3)} | "
                    f"{fmt(row.get('gender_accuracy'), 3)} | {source} |"
                )
    parity = export.get("parity", {})
    lines += [
        "",
        f"Export parity on {parity.get('faces', '?')} val faces: max |age difference| "
        f"PyTorch vs onnxruntime {parity.get('max_abs_age_diff_years', float('nan')):.2e} years"
        + ".",
        "These are figures on cached crops; the full `faceage` pipeline (detection at "
        "inference) is measured by `benchmarks/`.",
        "",
    ]
    lines += _pipeline_section(name)
    lines += _speed_section(name)
    CARDS_DIR.mkdir(exist_ok=True)
    path = CARDS_DIR / f"{name}.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a model card from measured results.")
    parser.add_argument("names", nargs="+")
    for name in parser.parse_args().names:
        print(write_card(name))


if __name__ == "__main__":
    main()
