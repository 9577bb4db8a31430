"""The registry as data: ``weights_manifest.json`` read into frozen dataclasses.

Every model and detector faceage knows is described by the manifest: where its file
lives and its sha256, what its ONNX graph takes and gives, and what it measured. Code
never guesses a model's job from tensor shapes; it reads the spec.

Input convention of every age model: float32 pixels ``(x / 255 - mean) / std`` in the
spec's colour order, laid out ``(N, 3, H, W)`` for one crop, or ``(N, K, 3, H, W)`` for
``K`` context crops. Outputs: ``age`` in years ``(N,)`` or ``(N, 1)``; optional
``age_std`` in years; optional ``gender`` as the probability that the face is female.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from faceage.errors import ModelSpecError, UnknownModelError
from faceage.interval_spec import parse_calibration
from faceage.intervals import AgeCalibration

MANIFEST_FILENAME = "weights_manifest.json"
SPEC_FILENAME = "faceage.json"
SCHEMA_VERSION = 1

Task = Literal["age", "age+gender"]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class WeightFile:
    """One file: where to get it and how to check it.

    Attributes:
        filename: name of the file in the Hub repo (and in ``faceage/weights`` if bundled).
        sha256: hex digest the bytes must have; None only for user models whose
            ``faceage.json`` pins none.
        size: size in bytes, or None if unknown.
        repo_id: Hugging Face Hub repo holding the file, or None if it is never downloaded.
        revision: pinned Hub revision (commit or tag).
        bundled: True when the file ships inside the faceage wheel.
    """

    filename: str
    sha256: str | None = None
    size: int | None = None
    repo_id: str | None = None
    revision: str | None = None
    bundled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """Everything faceage needs to run one age model.

    Attributes:
        name: registry name, e.g. ``"c3ae"``.
        task: ``"age"`` or ``"age+gender"``.
        file: the ONNX file.
        input_size: side of each square crop in pixels.
        crop_scales: context scale of each crop (see :mod:`faceage.alignment`); one
            entry means a single crop.
        color_order: ``"rgb"`` or ``"bgr"`` channel order the network expects.
        mean, std: per-channel normalisation of pixels scaled to ``[0, 1]``.
        input_name: ONNX input name.
        age_output, age_std_output, gender_output: ONNX output names (None if absent).
        age_range: ``(low, high)`` ages are clipped to.
        architecture, description, paper, license: text for people.
        params: number of trainable parameters.
        metrics: measured figures (MAE, CS(5), ...) with the command that measured them.
        flip: whether :class:`~faceage.AgeEstimator` averages each face with its mirror
            image unless told otherwise (set where it lowered the val error).
        age_interval: the calibration of its age intervals (:mod:`faceage.intervals`),
            or None: its faces then get no interval.
    """

    name: str
    task: Task
    file: WeightFile
    input_size: int
    crop_scales: tuple[float, ...] = (1.0,)
    color_order: Literal["rgb", "bgr"] = "rgb"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    input_name: str = "input"
    age_output: str = "age"
    age_std_output: str | None = None
    gender_output: str | None = None
    age_range: tuple[float, float] = (0.0, 116.0)
    architecture: str = ""
    description: str = ""
    paper: str = ""
    license: str = ""
    params: int | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    flip: bool = False
    age_interval: AgeCalibration | None = None

    @property
    def num_crops(self) -> int:
        return len(self.crop_scales)

    @property
    def has_gender(self) -> bool:
        return self.gender_output is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = dict(self.metrics)
        return data


@dataclass(frozen=True)
class EnsembleSpec:
    """Registered models run together on one set of crops, their outputs averaged.

    The crops are made once, at the largest member's size and at every scale a member
    reads; each member gets its scales, resized to its own input size.

    Attributes:
        name: registry name, e.g. ``"ensemble"``.
        members: the specs of every model it runs, each once.
        age_from: names of the members whose ages are averaged.
        gender_from: names of the members whose P(female) is averaged (may be empty).
        description: text for people.
        metrics: measured figures, as for a model.
        flip: the default test-time mirroring, as for a model.
        age_interval: the calibration of its age intervals, as for a model.
    """

    name: str
    members: tuple[ModelSpec, ...]
    age_from: tuple[str, ...]
    gender_from: tuple[str, ...] = ()
    description: str = ""
    metrics: Mapping[str, Any] = field(default_factory=dict)
    flip: bool = False
    age_interval: AgeCalibration | None = None

    @property
    def task(self) -> Task:
        return "age+gender" if self.gender_from else "age"

    @property
    def has_gender(self) -> bool:
        return bool(self.gender_from)

    @property
    def input_size(self) -> int:
        return max(member.input_size for member in self.members)

    @property
    def crop_scales(self) -> tuple[float, ...]:
        return tuple(sorted({s for member in self.members for s in member.crop_scales}))

    @property
    def num_crops(self) -> int:
        return len(self.crop_scales)

    @property
    def params(self) -> int | None:
        counts = [member.params for member in self.members]
        return None if None in counts else sum(c for c in counts if c is not None)

    @property
    def license(self) -> str:
        return "; ".join(dict.fromkeys(m.license for m in self.members if m.license))

    @property
    def architecture(self) -> str:
        gender = f"; gender: mean of {', '.join(self.gender_from)}" if self.gender_from else ""
        return f"ensemble; age: mean of {', '.join(self.age_from)}{gender}"


@dataclass(frozen=True)
class DetectorSpec:
    """A downloadable detector (the default RetinaFace ships in a wheel and needs none)."""

    name: str
    file: WeightFile
    description: str = ""
    license: str = ""


@dataclass(frozen=True)
class Manifest:
    models: Mapping[str, ModelSpec]
    detectors: Mapping[str, DetectorSpec]
    ensembles: Mapping[str, EnsembleSpec] = field(default_factory=dict)

    def model(self, name: str) -> ModelSpec:
        try:
            return self.models[name]
        except KeyError:
            raise self._unknown(name) from None

    def estimator_spec(self, name: str) -> ModelSpec | EnsembleSpec:
        """A model's or an ensemble's spec: anything ``AgeEstimator.from_pretrained`` runs."""
        if name in self.ensembles:
            return self.ensembles[name]
        return self.model(name)

    def _unknown(self, name: str) -> UnknownModelError:
        choices = ", ".join(sorted({*self.models, *self.ensembles}))
        return UnknownModelError(
            f"unknown model {name!r}; choose one of {choices}, "
            "or pass 'hf-hub:owner/repo' or a directory with model.onnx + faceage.json"
        )

    def detector(self, name: str) -> DetectorSpec:
        try:
            return self.detectors[name]
        except KeyError:
            raise UnknownModelError(
                f"unknown detector {name!r}; choose 'retinaface', "
                f"{', '.join(repr(n) for n in sorted(self.detectors))} or None"
            ) from None


def _require(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise ModelSpecError(f"{where}: missing required field {key!r}")
    return entry[key]


def parse_weight_file(entry: Mapping[str, Any], where: str) -> WeightFile:
    if not isinstance(entry, Mapping):
        raise ModelSpecError(f"{where}: 'file' must be an object")
    sha256 = entry.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.match(sha256)):
        raise ModelSpecError(f"{where}: sha256 must be 64 lowercase hex digits, got {sha256!r}")
    filename = _require(entry, "filename", where)
    if (
        not isinstance(filename, str)
        or not filename
        or "/" in filename
        or "\\" in filename
        or filename in (".", "..")
    ):
        raise ModelSpecError(f"{where}: filename must be a plain file name, got {filename!r}")
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ModelSpecError(f"{where}: size must be a positive integer, got {size!r}")
    return WeightFile(
        filename=filename,
        sha256=sha256,
        size=size,
        repo_id=entry.get("repo_id"),
        revision=entry.get("revision"),
        bundled=bool(entry.get("bundled", False)),
    )


def _triple(value: Any, key: str, where: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise ModelSpecError(f"{where}: {key} must be a list of 3 numbers, got {value!r}")
    try:
        floats = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ModelSpecError(f"{where}: {key} must hold numbers, got {value!r}") from None
    return floats[0], floats[1], floats[2]


def _flip(entry: Mapping[str, Any], where: str) -> bool:
    flip = entry.get("flip", False)
    if not isinstance(flip, bool):
        raise ModelSpecError(f"{where}: flip must be true or false, got {flip!r}")
    return flip


def parse_model_spec(
    name: str, entry: Mapping[str, Any], *, file: WeightFile | None = None, where: str | None = None
) -> ModelSpec:
    """Validate one manifest entry (or a ``faceage.json``) and build its :class:`ModelSpec`."""
    where = where or f"model {name!r}"
    if not isinstance(entry, Mapping):
        raise ModelSpecError(f"{where}: the spec must be a JSON object")
    task = entry.get("task", "age")
    if task not in ("age", "age+gender"):
        raise ModelSpecError(f"{where}: task must be 'age' or 'age+gender', got {task!r}")
    inputs = _require(entry, "input", where)
    outputs = entry.get("output", {})
    if not isinstance(inputs, Mapping) or not isinstance(outputs, Mapping):
        raise ModelSpecError(f"{where}: 'input' and 'output' must be objects")
    size = _require(inputs, "size", where)
    if not isinstance(size, int) or not 8 <= size <= 1024:
        raise ModelSpecError(f"{where}: input.size must be an integer in [8, 1024], got {size!r}")
    scales = inputs.get("crop_scales", [1.0])
    if (
        not isinstance(scales, (list, tuple))
        or not scales
        or not all(isinstance(s, (int, float)) and 0.1 <= s <= 10 for s in scales)
    ):
        raise ModelSpecError(
            f"{where}: input.crop_scales must be a non-empty list of numbers "
            f"in [0.1, 10], got {scales!r}"
        )
    color_order = inputs.get("color_order", "rgb")
    if color_order not in ("rgb", "bgr"):
        raise ModelSpecError(f"{where}: input.color_order must be 'rgb' or 'bgr'")
    std = _triple(inputs.get("std", [0.5, 0.5, 0.5]), "input.std", where)
    if any(s <= 0 for s in std):
        raise ModelSpecError(f"{where}: input.std must be positive")
    gender_output = outputs.get("gender")
    if task == "age+gender" and not gender_output:
        raise ModelSpecError(f"{where}: task 'age+gender' needs output.gender")
    if task == "age" and gender_output:
        raise ModelSpecError(f"{where}: task 'age' must not name output.gender")
    age_range = entry.get("age_range", [0, 116])
    if (
        not isinstance(age_range, (list, tuple))
        or len(age_range) != 2
        or not float(age_range[0]) < float(age_range[1])
    ):
        raise ModelSpecError(f"{where}: age_range must be [low, high] with low < high")
    weight_file = file or parse_weight_file(_require(entry, "file", where), where)
    return ModelSpec(
        name=name,
        task=task,
        file=weight_file,
        input_size=size,
        crop_scales=tuple(float(s) for s in scales),
        color_order=color_order,
        mean=_triple(inputs.get("mean", [0.5, 0.5, 0.5]), "input.mean", where),
        std=std,
        input_name=str(inputs.get("name", "input")),
        age_output=str(outputs.get("age", "age")),
        age_std_output=outputs.get("age_std"),
        gender_output=gender_output,
        age_range=(float(age_range[0]), float(age_range[1])),
        architecture=str(entry.get("architecture", "")),
        description=str(entry.get("description", "")),
        paper=str(entry.get("paper", "")),
        license=str(entry.get("license", "")),
        params=entry.get("params"),
        metrics=dict(entry.get("metrics", {})),
        flip=_flip(entry, where),
        age_interval=_age_interval(entry, where, ensemble=False),
    )


def _age_interval(entry: Mapping[str, Any], where: str, *, ensemble: bool) -> AgeCalibration | None:
    block = entry.get("age_interval")
    return None if block is None else parse_calibration(block, where, ensemble=ensemble)


def parse_manifest(data: Mapping[str, Any], where: str = MANIFEST_FILENAME) -> Manifest:
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ModelSpecError(f"{where}: schema_version must be {SCHEMA_VERSION}")
    models = {name: parse_model_spec(name, entry) for name, entry in data.get("models", {}).items()}
    detectors = {}
    for name, entry in data.get("detectors", {}).items():
        detectors[name] = DetectorSpec(
            name=name,
            file=parse_weight_file(
                _require(entry, "file", f"detector {name!r}"), f"detector {name!r}"
            ),
            description=str(entry.get("description", "")),
            license=str(entry.get("license", "")),
        )
    ensembles = {
        name: parse_ensemble_spec(name, entry, models)
        for name, entry in data.get("ensembles", {}).items()
    }
    return Manifest(models=models, detectors=detectors, ensembles=ensembles)


def parse_ensemble_spec(
    name: str, entry: Mapping[str, Any], models: Mapping[str, ModelSpec]
) -> EnsembleSpec:
    """Validate one ``ensembles`` entry of the manifest against its registered models."""
    where = f"ensemble {name!r}"
    if name in models:
        raise ModelSpecError(f"{where}: the name is already a model's")
    members = _require(entry, "members", where)
    if not isinstance(members, Mapping):
        raise ModelSpecError(f"{where}: members must be an object with 'age' and 'gender' lists")
    age_from = tuple(_require(members, "age", where))
    gender_from = tuple(members.get("gender", ()))
    if not age_from:
        raise ModelSpecError(f"{where}: members.age must name at least one model")
    for role, names in (("age", age_from), ("gender", gender_from)):
        for member in names:
            if member not in models:
                raise ModelSpecError(f"{where}: members.{role} names unknown model {member!r}")
            if role == "gender" and not models[member].has_gender:
                raise ModelSpecError(f"{where}: {member!r} gives no gender")
        if len(set(names)) != len(names):
            raise ModelSpecError(f"{where}: members.{role} names a model twice")
    return EnsembleSpec(
        name=name,
        members=tuple(models[m] for m in dict.fromkeys((*age_from, *gender_from))),
        age_from=age_from,
        gender_from=gender_from,
        description=str(entry.get("description", "")),
        metrics=dict(entry.get("metrics", {})),
        flip=_flip(entry, where),
        age_interval=_age_interval(entry, where, ensemble=True),
    )


@lru_cache(maxsize=1)
def load_manifest() -> Manifest:
    """The manifest shipped inside the installed package."""
    text = resources.files("faceage").joinpath(MANIFEST_FILENAME).read_text(encoding="utf-8")
    return parse_manifest(json.loads(text))


#: Every key a user model's ``faceage.json`` may hold, per object. Anything else (a
#: "loader", a "preprocess" hook, a pickle path) is refused: faceage reads data from the
#: spec and runs nothing but the ONNX graph.
USER_SPEC_KEYS: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "name",
            "task",
            "file",
            "input",
            "output",
            "age_range",
            "architecture",
            "description",
            "paper",
            "license",
            "params",
            "metrics",
            "flip",
            "age_interval",
        }
    ),
    "file": frozenset({"filename", "sha256", "size", "repo_id", "revision", "bundled"}),
    "input": frozenset({"size", "crop_scales", "color_order", "mean", "std", "name"}),
    "output": frozenset({"age", "age_std", "gender"}),
}


def _refuse_unknown_keys(entry: Mapping[str, Any], where: str) -> None:
    for section, allowed in USER_SPEC_KEYS.items():
        node = entry.get(section) if section else entry
        if not isinstance(node, Mapping):
            continue
        unknown = sorted(set(node) - allowed)
        if unknown:
            prefix = f"{section}." if section else ""
            raise ModelSpecError(
                f"{where}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
                f"{SPEC_FILENAME} may only hold {', '.join(sorted(allowed))} there. faceage "
                "runs nothing but the ONNX graph; remove them."
            )


def load_spec_file(path: Path, *, name: str | None = None) -> ModelSpec:
    """Read a user model's ``faceage.json``; its ONNX file is ``model.onnx`` beside it
    unless the spec names another ``file.filename``. Keys faceage does not know are
    refused (see :data:`USER_SPEC_KEYS`)."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSpecError(f"{path}: not a readable JSON model spec ({exc})") from exc
    if not isinstance(entry, Mapping):
        raise ModelSpecError(f"{path}: the spec must be a JSON object")
    _refuse_unknown_keys(entry, str(path))
    file_entry = entry.get("file", {"filename": "model.onnx"})
    weight_file = parse_weight_file(file_entry, str(path))
    return parse_model_spec(
        name or str(entry.get("name", path.parent.name)), entry, file=weight_file, where=str(path)
    )
