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

from training.datasets import REPO_ROOT
from training.models import ARCHITECTURES
from training.recipes import RESULTS_DIR, committed_file, load_config, train_command
from training.warm_start import CALIBRATION_FACES

CARDS_DIR = Path(__file__).resolve().parent / "cards"

CHOICES_DIR = CARDS_DIR / "choices"


def choices(name: str) -> str:
    """The card's prose on choices where the paper is vague, and on what was tried:
    ``training/cards/choices/NAME.md``, written by hand."""
    path = CHOICES_DIR / f"{name}.md"
    return path.read_text().rstrip() if path.exists() else "- none"


def _epochs_line(config: dict[str, Any], results: dict[str, Any]) -> str:
    if results["epochs"] == 0:  # the warm start and the head refit are the whole run
        return f"- No whole-network epochs: {_start(config)}; then the head refit below."
    return (
        f"- {results['epochs']} epochs (best val at epoch {results['best_epoch']}), batch "
        f"{config['batch_size']}, {config['optimizer']} lr {config['lr']} with warm-up and "
        f"cosine decay, weight decay {config['weight_decay']}, {_start(config)}."
    )


def _fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


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
        f"| {_fmt(entry.get('mae'))} | {_fmt(entry.get('median_ae'))} | "
        f"{_fmt(entry.get('cs5'), 3)} | {_fmt(entry.get('mae_flip'))} | "
        f"{_fmt(entry.get('gender_accuracy'), 3)} | {_fmt(entry.get('gender_accuracy_flip'), 3)} "
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


def _warm_start(spec: str, *, outer: bool = True, continued: bool = True) -> str:
    name, _, commit = spec.partition("@")
    if not commit:
        return f"started from the weights of `faceage/weights/{name}.onnx`"
    stage = json.loads(committed_file(f"training/results/{name}.json", commit))
    stage_config = stage["config"]
    # how that run began, so a chain of restarts reads back to its first run
    earlier = (
        _warm_start(stage_config["init_from_onnx"], outer=False)
        if stage_config.get("init_from_onnx")
        else _start(stage_config)
    )
    if earlier.startswith("from scratch"):
        earlier = f"trained {earlier}"
    text = (
        f"a warm restart from `faceage/weights/{name}.onnx` as committed in {commit[:10]}"
        + (
            f" (`training/warm_start.py`: BatchNorms the exporter folded are re-fitted on "
            f"{CALIBRATION_FACES:,} training faces, same function)"
            if outer
            else ""
        )
        + f": that run trained {stage['epochs']} epochs (peak lr {stage_config['lr']:g}, "
        f"config `training/configs/{name}.json` of that commit), best val "
        f"{_score(stage['metrics']['val'])}, test {_score(stage['metrics']['test'])} on the "
        f"cached crops, and was itself {earlier}"
    )
    if outer and continued:
        text += "; this config continues it on a fresh cosine schedule"
    return text


def _score(row: dict[str, Any]) -> str:
    """A split's selection figure: MAE, or gender accuracy for a gender-only net."""
    if row.get("mae") is not None:
        return f"MAE {_fmt(row['mae'])}"
    return f"gender accuracy {100 * row['gender_accuracy']:.1f}%"


def _start(config: dict[str, Any]) -> str:
    if config.get("init_from_onnx"):
        return _warm_start(config["init_from_onnx"], continued=config["epochs"] > 0)
    if not config.get("init_from"):
        return "from scratch (no pre-training)"
    stage = json.loads((RESULTS_DIR / f"{config['init_from']}.json").read_text())
    stage_config = stage["config"]
    text = (
        f"started from `{config['init_from']}` (config `training/configs/"
        f"{config['init_from']}.json`: the same architecture trained from scratch for "
        f"{stage['epochs']} epochs on {stage_config['input_size']} px crops of the training "
        f"faces, best val MAE {_fmt(stage['metrics']['val'].get('mae'))} at epoch "
        f"{stage['best_epoch']})"
    )
    frozen = config.get("freeze_backbone_epochs", 0)
    if frozen:
        text += (
            f"; backbone frozen for the first {frozen} epoch(s) so the head adapts first, "
            "then the whole network is trained"
        )
    return text


def _schedule(config: dict[str, Any]) -> list[str]:
    stages = config.get("schedule_epochs", [])
    if len(stages) < 2:
        return []
    restarts = ", then ".join(str(e) for e in stages[1:])
    return [
        f"- Learning rate: a cosine to epoch {stages[0]}, then back up and down again to "
        f"epoch {restarts} (warm restarts; `schedule_epochs` {stages} in the config, one "
        "command, whether the run was one or was resumed with a larger `--epochs`)."
    ]


def _teacher_list(specs: list[str]) -> str:
    return " and ".join(
        f"`{name}` as committed in {commit[:10]}" if commit else f"`{name}`"
        for name, _, commit in (t.partition("@") for t in specs)
    )


def _distill(config: dict[str, Any]) -> list[str]:
    if not config.get("distill"):
        return []
    settings = config["distill"]
    weight = settings["weight"]
    start = settings.get("from_epoch", 0)
    when = f"From epoch {start + 1} on, the" if start else "The"
    seen = (
        "each on its own crops of the very view the student trains on, every batch"
        if settings.get("online")
        else "on the un-augmented training crops"
    )
    if "gender_teachers" in settings:
        of_what = (
            f"the mean prediction of {_teacher_list(settings['teachers'])} for age, and of "
            f"{_teacher_list(settings['gender_teachers'])} for P(female) (ONNX files, {seen})."
        )
    else:
        of_what = (
            f"the mean prediction of {_teacher_list(settings['teachers'])} (ONNX files, "
            f"{seen}), for age and for P(female)."
        )
    mixup = settings.get("mixup")
    mixed = (
        f" Each face is blended with another of its batch, weight ~ Beta({mixup:g}, {mixup:g}),"
        " in the student's and the teachers' views and in the label alike."
        if mixup
        else ""
    )
    return [
        f"- Distilled (`training/distill.py`). {when} targets are {1 - weight:g} x label + "
        f"{weight:g} x {of_what}{mixed}"
    ]


def _head_refit(config: dict[str, Any], results: dict[str, Any]) -> list[str]:
    settings = config.get("head_refit")
    if not settings:
        return []
    refit = [r for r in results.get("history", []) if r.get("stage") == "head_refit"]
    best = min(refit, key=lambda r: r["val_score"]) if refit else None
    reset = ", ".join(f"`{name}`" for name in settings.get("reset", []))
    blocks = settings.get("train_blocks", 0)
    trunk = (
        f"the trunk (the backbone but its last {blocks} block{'s' if blocks > 1 else ''} and "
        "final 1x1 conv, which train with the heads) frozen"
        if blocks
        else "the trunk frozen"
    )
    copies = settings.get("augmented_copies", 0)
    passes = ["the un-augmented training crops"]
    if settings.get("flip"):
        passes.append("their mirror images")
    if copies:
        passes.append(f"{copies} randomly augmented cop{'ies' if copies > 1 else 'y'} of each")
    return [
        "- Head refit first (`training/head_refit.py`): after the warm start, "
        + (f"modules {reset} re-initialised, " if reset else "no module re-initialised, ")
        + f"{trunk} and run once on "
        + ", ".join(passes[:-1])
        + (" and " if len(passes) > 1 else "")
        + passes[-1]
        + ", the heads trained on its features for "
        f"{settings['epochs']} epochs (batch {settings.get('batch_size', 128)}, AdamW lr "
        f"{settings['lr']:g}, cosine)"
        + (
            f": best val MAE {best['val_score']:.2f} at refit epoch {best['epoch']}; "
            "that model is epoch 0 of the run, kept unless a later epoch beats it on val."
            if best
            else "."
        )
    ]


def _chosen_epoch(results: dict[str, Any]) -> dict[str, Any] | None:
    """The history record of the chosen training epoch (not a head-refit epoch)."""
    for record in results.get("history", []):
        if "stage" not in record and record.get("epoch") == results["best_epoch"]:
            return record
    return None


def _ema(config: dict[str, Any], results: dict[str, Any]) -> list[str]:
    settings = config.get("ema")
    if not settings:
        return []
    start = settings.get("from_epoch", 0)
    line = (
        f"- Weight average (`training/ema.py`): an exponential moving average of the "
        f"weights (decay {settings['decay']:g} per step"
        + (f", from epoch {start + 1}" if start else "")
        + ") is what is validated, chosen and exported; the raw weights go on training"
    )
    chosen = _chosen_epoch(results)
    if chosen and "val_raw" in chosen:
        line += (
            f". At the chosen epoch: val {_score(chosen['val'])} averaged, "
            f"{_score(chosen['val_raw'])} raw"
        )
    return [line + "."]


def _mirrored(config: dict[str, Any], results: dict[str, Any]) -> list[str]:
    if not config.get("validate_mirrored"):
        return []
    chosen = _chosen_epoch(results)
    line = (
        "- Epochs chosen on the mean of the val score and the score on the mirror images "
        "of the val faces (`validate_mirrored`)"
    )
    if chosen and "val_mirrored" in chosen:
        line += (
            f". At the chosen epoch: val {_score(chosen['val'])}, mirrored "
            f"{_score(chosen['val_mirrored'])}"
        )
    return [line + "."]


def _autocast(config: dict[str, Any]) -> list[str]:
    if not config.get("autocast_bf16"):
        return []
    epochs = config.get("autocast_bf16_epochs")
    when = f" in epochs {epochs[0] + 1} to {epochs[1]}" if epochs else ""
    line = (
        f"- Forward pass under bfloat16 autocast{when} (loss, optimiser, validation and "
        "export in float32): ~1.7x faster per batch for the plain convolution nets on a "
        "CPU with AVX512-BF16"
    )
    if epochs and epochs[1] < config["epochs"]:
        line += "; switched off after that, as it measured slower than float32 for this net"
    return [line + "."]


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
        _epochs_line(config, results),
        *_schedule(config),
        *_head_refit(config, results),
        *_distill(config),
        *_ema(config, results),
        *_mirrored(config, results),
        *_autocast(config),
        "- Augmentation (same transform for all crops of a face): horizontal flip, shift "
        f"±{config['augment']['max_shift']:.0%}, scale ±{config['augment']['max_scale']:.0%}, "
        f"rotation ±{config['augment']['max_rotation_deg']}°, brightness / contrast / "
        f"saturation ±{config['augment']['brightness']:.0%}.",
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
                    f"| {split} | {_fmt(row.get('mae'))} | {_fmt(row.get('cs5'), 3)} | "
                    f"{_fmt(row.get('gender_accuracy'), 3)} | {source} |"
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
