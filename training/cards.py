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
from typing import Any

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


TITLES = {"utkface": "UTKFace", "aaf": "All-Age-Faces"}
AGE_GROUPS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _pipeline_section(name: str) -> list[str]:
    """The full-pipeline test figures ``benchmarks.accuracy --update-manifest`` recorded
    for each data set, and the default flip its val run chose."""
    manifest = json.loads((REPO_ROOT / "weights_manifest.json").read_text())
    model = manifest["models"].get(name, {})
    metrics = model.get("metrics", {})
    measured = {d: metrics[f"{d}_test_pipeline"] for d in TITLES if f"{d}_test_pipeline" in metrics}
    if not measured:
        return []
    flip = "_flip" if model.get("flip") else ""
    lines = [
        "## Results through the full faceage pipeline (test splits)",
        "",
        f"With this model's default flip ({'on' if flip else 'off'}); MAE without / with flip.",
        "",
        "| data set | MAE | MAE with flip | median AE | CS(5) | gender | women | men "
        "| no face found |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset, entry in measured.items():
        lines.append(
            f"| {TITLES[dataset]} | {fmt(entry.get('mae'))} | {fmt(entry.get('mae_flip'))} | "
            f"{fmt(entry.get('median_ae'))} | {fmt(entry.get('cs5'), 3)} | "
            f"{_percent(entry.get('gender_accuracy' + flip))} | "
            f"{_percent(entry.get('gender_accuracy_female' + flip))} | "
            f"{_percent(entry.get('gender_accuracy_male' + flip))} | "
            f"{100 * entry.get('no_face_share', 0):.2f}% |"
        )
    grouped = {d: e["by_age_group"] for d, e in measured.items() if "by_age_group" in e}
    if grouped:
        lines += [
            "",
            "MAE and signed error (predicted - true; + is over-estimation) by age group, flip off:",
            "",
            "| data set | | " + " | ".join(AGE_GROUPS) + " |",
            "|---|---" + "|---" * len(AGE_GROUPS) + "|",
        ]
        for dataset, groups in grouped.items():
            for key, label, digits in (("mae", "MAE", ".1f"), ("signed", "signed", "+.1f")):
                cells = [format(groups[g][key], digits) if g in groups else "" for g in AGE_GROUPS]
                lines.append(f"| {TITLES[dataset]} | {label} | " + " | ".join(cells) + " |")
    first = next(iter(measured.values()))
    lines += [
        "",
        f"Measured by `{first.get('command')}` on {first.get('machine')}: {first.get('protocol')}.",
        "",
    ]
    vals = [metrics[f"{d}_val_pipeline"] for d in measured if f"{d}_val_pipeline" in metrics]
    if vals and all("mae_flip" in v for v in vals):
        figures = "; ".join(
            f"{TITLES[d]} {v['mae']:.3f} -> {v['mae_flip']:.3f}"
            + (
                f" (gender {100 * v['gender_accuracy']:.1f}% -> "
                f"{100 * v['gender_accuracy_flip']:.1f}%)"
                if "gender_accuracy_flip" in v
                else ""
            )
            for d, v in zip(measured, vals)
        )
        lines += [
            f"Flip by default: **{'on' if model.get('flip') else 'off'}**, chosen on val "
            f"(`{vals[0].get('command')}`; on the mean over the data sets): with flip, val "
            f"MAE {figures}.",
            "",
        ]
    return lines


def _datasets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The data sets a run trained on, each with its crop cache's ``meta.json`` (a run
    from before data sets were a parameter trained on UTKFace alone)."""
    data = results["data"]
    if "datasets" in data:
        return data["datasets"]
    return {"utkface": {"sampling_weight": 1.0, "crop_cache": data["crop_cache"]}}


def _trained_on(results: dict[str, Any]) -> str:
    return " and ".join(TITLES[d] for d in _datasets(results))


def _per_set(row: dict[str, Any] | None, results: dict[str, Any]) -> list[tuple[str, Any]]:
    if not row:
        return []
    if "by_dataset" in row:
        return list(row["by_dataset"].items())
    return [(next(iter(_datasets(results))), row)]


def _data_section(results: dict[str, Any]) -> list[str]:
    sets = _datasets(results)
    lines = []
    for dataset, info in sets.items():
        meta = info["crop_cache"]
        split = meta["per_split"]
        more = [split[s].get("more_than_one_face") for s in ("train", "val", "test")]
        lines += [
            f"- **{TITLES[dataset]}** ({meta.get('description', 'aligned and cropped chips')}), "
            f"fixed split of its `labels.csv`: {split['train']['images']:,} train, "
            f"{split['val']['images']:,} val, {split['test']['images']:,} test"
            + (f"; drawn {info['sampling_weight']:g}x per epoch" if len(sets) > 1 else "")
            + f". Crops by faceage itself (`python -m training.data --dataset {dataset}`): "
            f"RetinaFace (default settings), {meta.get('labelled_face', 'best-scoring face')}, "
            f"`faceage.alignment.context_crops` at scales {meta['scales']}, {meta['size']} px. "
            f"No face found: {split['train']['not_detected']} train, "
            f"{split['val']['not_detected']} val, {split['test']['not_detected']} test "
            f"photos; {meta.get('when_no_face', 'cropped as aligned chips and kept')}."
            + (
                f" More than one face: {more[0]} train, {more[1]} val, {more[2]} test."
                if None not in more
                else ""
            )
        ]
    selection = (
        "the mean of the data sets' val scores (each set counts alike)"
        if len(sets) > 1
        else "the val score"
    )
    return [
        *lines,
        "",
        f"Trained on train, chosen on {selection} (best epoch), evaluated once on test.",
    ]


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
        f"- **Licence:** weights trained on {_trained_on(results)}: non-commercial research "
        "only (the data sets' terms).",
        "",
        "## Choices where the paper is vague",
        "",
        choices(name),
        "",
        "## Data",
        "",
        *_data_section(results),
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
        "## Results on faceage's cached crops",
        "",
        "| split | data set | MAE (years) | CS(5) | gender | women | men | evaluated with |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for split in ("val", "test"):
        for source, table in (("PyTorch", metrics), ("onnxruntime", onnx_metrics)):
            for dataset, row in _per_set(table.get(split), results):
                lines.append(
                    f"| {split} | {TITLES[dataset]} | {fmt(row.get('mae'))} | "
                    f"{fmt(row.get('cs5'), 3)} | {_percent(row.get('gender_accuracy'))} | "
                    f"{_percent(row.get('gender_accuracy_female'))} | "
                    f"{_percent(row.get('gender_accuracy_male'))} | {source} |"
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
