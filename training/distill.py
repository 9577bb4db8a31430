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

``"online": true`` runs the teachers on every training batch instead, each on its own
crops transformed exactly as the student's (consistent teaching, see ``OnlineTeachers``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from training.data import REPO_ROOT, committed_file

TEACHER_DIR = REPO_ROOT / "runs" / "teachers"


def teacher_bytes(teacher: str) -> tuple[str, bytes]:
    """The model name and ONNX bytes of ``NAME`` (the shipped file) or ``NAME@COMMIT``."""
    from training.export import WEIGHTS_DIR

    name, _, commit = teacher.partition("@")
    path = WEIGHTS_DIR / f"{name}.onnx"
    if not commit:
        return name, path.read_bytes()
    try:
        return name, committed_file(path.relative_to(REPO_ROOT).as_posix(), commit)
    except ValueError as exc:
        raise ValueError(f"teacher {teacher!r}: {exc}") from None


def _teacher_on_train(teacher: str) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    from training.export import contract_inputs, run_onnx
    from training.train import CachedSplit, load_config

    name, onnx_bytes = teacher_bytes(teacher)
    digest = hashlib.sha256(onnx_bytes).hexdigest()[:16]
    cached = TEACHER_DIR / f"{name}-{digest}-train.npz"
    if cached.exists():
        return dict(np.load(cached))
    config = load_config(name)
    data = CachedSplit(config, "train")
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    ages, genders = run_onnx(session, contract_inputs(data.crops, len(config["crop_scales"])))
    out = {"labels": data.ages, "age": ages}
    if genders is not None:
        out["gender"] = genders
    TEACHER_DIR.mkdir(parents=True, exist_ok=True)
    np.savez(cached, **out)
    return out


def soft_targets(
    config: dict[str, Any], ages: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Mean teacher age and P(female) for every training row (``None``: no teacher has it).

    ``ages`` are the student's training labels, to check that the teachers' crop caches
    list the same faces in the same order.
    """
    settings = config["distill"]
    age_names = list(settings["teachers"])
    gender_names = list(settings.get("gender_teachers", age_names))
    predictions = {
        name: _teacher_on_train(name) for name in dict.fromkeys(age_names + gender_names)
    }
    for name, prediction in predictions.items():
        if not np.array_equal(prediction["labels"], ages):
            raise ValueError(f"teacher {name!r} was predicted on other training rows")
    if "gender_teachers" in settings:
        genderless = [name for name in gender_names if "gender" not in predictions[name]]
        if genderless:
            raise ValueError(f"gender teachers {genderless} predict no gender")
    teacher_ages = [predictions[name]["age"] for name in age_names]
    teacher_genders = [predictions[n]["gender"] for n in gender_names if "gender" in predictions[n]]
    return (
        np.mean(teacher_ages, axis=0).astype(np.float32),
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


class OnlineTeachers:
    """Teachers that label the very view the student trains on ("consistent teaching").

    Each teacher reads its own training crops, transformed by the same random draws as
    the student's batch (``training.augment`` draws depend only on the batch size, so a
    generator reset to the state before the student's draws replays them at any crop
    size). With ``"mixup": A`` each face of the batch is blended with another,
    ``lam * a + (1 - lam) * b``, ``lam ~ Beta(A, A)``, in the student's and every
    teacher's view alike, and so is the label part of the target. After Beyer et al.,
    "Knowledge distillation: A good teacher is patient and consistent" (CVPR 2022).
    """

    def __init__(self, config: dict[str, Any], student_data: Any) -> None:
        import onnxruntime as ort

        from training.train import CachedSplit, load_config

        settings = config["distill"]
        self.weight = float(settings["weight"])
        self.mixup = float(settings.get("mixup", 0.0))
        self.augment_settings = config.get("augment", {})
        self.labels = (student_data.ages, student_data.genders.astype(np.float32))
        self.age_names = list(settings["teachers"])
        self.gender_names = list(settings.get("gender_teachers", self.age_names))
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.get("threads", 2)
        options.inter_op_num_threads = 1
        # per teacher: its crops, its session, how many crops it reads, its output names
        self.teachers: dict[str, tuple[Any, Any, int, list[str]]] = {}
        for teacher in dict.fromkeys(self.age_names + self.gender_names):
            name, onnx_bytes = teacher_bytes(teacher)
            teacher_config = load_config(name)
            same_crops = all(
                teacher_config.get(key) == config.get(key)
                for key in ("input_size", "crop_scales", "cache_scales")
            )
            data = student_data if same_crops else CachedSplit(teacher_config, "train")
            if not np.array_equal(data.ages, student_data.ages):
                raise ValueError(f"teacher {teacher!r} reads other training rows")
            session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
            outputs = [output.name for output in session.get_outputs()]
            self.teachers[teacher] = (data, session, len(teacher_config["crop_scales"]), outputs)
        genderless = [n for n in self.gender_names if "gender" not in self.teachers[n][3]]
        if genderless:
            raise ValueError(f"gender teachers {genderless} predict no gender")
        self._student_data = student_data

    def batch(
        self,
        rows: np.ndarray,
        x: torch.Tensor,
        view_state: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The student's (mixed) batch and its age and P(female) targets.

        ``x`` is the student's augmented batch of ``rows``, ``view_state`` the state
        ``generator`` had before ``x`` was drawn.
        """
        from training.augment import augment, normalize

        views: dict[str, torch.Tensor] = {}
        for teacher, (data, *_) in self.teachers.items():
            if data is self._student_data:
                views[teacher] = x
            else:
                replay = torch.Generator().set_state(view_state)
                views[teacher] = augment(data.inputs(rows), self.augment_settings, replay)
        ages, genders = (torch.from_numpy(label[rows].astype(np.float32)) for label in self.labels)
        if self.mixup:
            rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
            lam = torch.from_numpy(rng.beta(self.mixup, self.mixup, len(rows)).astype(np.float32))
            partner = torch.from_numpy(rng.permutation(len(rows)))

            def mix(t: torch.Tensor) -> torch.Tensor:
                weight = lam.view(-1, *([1] * (t.ndim - 1)))
                return weight * t + (1 - weight) * t[partner]

            mixed = mix(x)
            views = {teacher: mixed if view is x else mix(view) for teacher, view in views.items()}
            x, ages, genders = mixed, mix(ages), mix(genders)
        predictions: dict[str, dict[str, np.ndarray]] = {}
        for teacher, (_, session, num_crops, names) in self.teachers.items():
            view = normalize(views[teacher]).numpy()
            outputs = session.run(None, {"input": view[:, 0] if num_crops == 1 else view})
            predictions[teacher] = dict(zip(names, outputs, strict=True))
        teacher_age = np.mean([predictions[n]["age"] for n in self.age_names], axis=0)
        teacher_gender = np.mean([predictions[n]["gender"] for n in self.gender_names], axis=0)
        w = self.weight
        return (
            x,
            (1 - w) * ages + w * torch.from_numpy(teacher_age.astype(np.float32)),
            (1 - w) * genders + w * torch.from_numpy(teacher_gender.astype(np.float32)),
        )
