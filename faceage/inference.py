"""Run an age model's ONNX graph on preprocessed faces and read its outputs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from faceage.errors import ModelSpecError
from faceage.preprocess import to_input_tensor
from faceage.runtime import ProviderList, create_session
from faceage.spec import ModelSpec


@dataclass(frozen=True)
class AgeOutputs:
    """Raw per-face outputs of one call: arrays of length N (None where absent).

    ``member_spread`` is an ensemble's: the standard deviation of its age members' ages
    (years). ``flip_gap`` is set by a flipped run: ``|age(face) - age(mirror)|`` (years).
    Both are the per-face signals the age interval is scaled by (:mod:`faceage.intervals`).
    """

    age: np.ndarray
    age_std: np.ndarray | None
    female_probability: np.ndarray | None
    member_spread: np.ndarray | None = None
    flip_gap: np.ndarray | None = None


class AgeModel:
    """One onnxruntime session for one model spec, created once and shared by threads.

    Args:
        spec: the model's spec.
        model_path: the verified ONNX file.
        providers, intra_op_num_threads, inter_op_num_threads: passed to onnxruntime.
        max_batch_size: faces per onnxruntime call; larger inputs are split.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model_path: str | os.PathLike[str],
        *,
        providers: ProviderList | None = None,
        intra_op_num_threads: int | None = None,
        inter_op_num_threads: int | None = None,
        max_batch_size: int = 64,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.spec = spec
        self.max_batch_size = max_batch_size
        self.session = create_session(
            model_path,
            providers=providers,
            intra_op_num_threads=intra_op_num_threads,
            inter_op_num_threads=inter_op_num_threads,
        )
        check_graph_matches_spec(self.session, spec, source=os.fspath(model_path))
        self._outputs = [
            name for name in (spec.age_output, spec.age_std_output, spec.gender_output) if name
        ]

    def run_crops(self, crops: np.ndarray) -> AgeOutputs:
        """Outputs for uint8 BGR crops ``(N, K, S, S, 3)`` laid out as the spec says."""
        return self.run(to_input_tensor(crops, self.spec))

    def run(self, tensor: np.ndarray) -> AgeOutputs:
        """Ages (clipped to the spec's range), spreads and P(female) for a batch."""
        ages, stds, females = [], [], []
        for start in range(0, max(len(tensor), 1), self.max_batch_size):
            chunk = tensor[start : start + self.max_batch_size]
            if len(chunk) == 0:
                break
            values = dict(
                zip(self._outputs, self.session.run(self._outputs, {self.spec.input_name: chunk}))
            )
            ages.append(_flat(values[self.spec.age_output], len(chunk)))
            if self.spec.age_std_output:
                stds.append(_flat(values[self.spec.age_std_output], len(chunk)))
            if self.spec.gender_output:
                females.append(_flat(values[self.spec.gender_output], len(chunk)))
        low, high = self.spec.age_range
        age = np.clip(_concat(ages), low, high)
        return AgeOutputs(
            age=age,
            age_std=_concat(stds) if self.spec.age_std_output else None,
            female_probability=np.clip(_concat(females), 0.0, 1.0)
            if self.spec.gender_output
            else None,
        )


def _flat(values: np.ndarray, count: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    if array.size != count:
        raise ModelSpecError(f"model output has shape {array.shape}, expected {count} values")
    return array.reshape(count)


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def check_graph_matches_spec(session: object, spec: ModelSpec, *, source: str) -> None:
    """Refuse an ONNX graph whose input or outputs are not the ones its spec names."""
    inputs = {i.name: i for i in session.get_inputs()}  # type: ignore[attr-defined]
    outputs = sorted(o.name for o in session.get_outputs())  # type: ignore[attr-defined]
    if spec.input_name not in inputs:
        raise ModelSpecError(
            f"{source}: the ONNX graph has no input named {spec.input_name!r} (input.name "
            f"of the spec of {spec.name!r}); its inputs are {sorted(inputs)}. "
            "Fix the spec (faceage.json) or the export."
        )
    rank = len(inputs[spec.input_name].shape)
    expected_rank = 4 if spec.num_crops == 1 else 5
    if rank != expected_rank:
        raise ModelSpecError(
            f"{source}: input {spec.input_name!r} has rank {rank}, but {spec.num_crops} crop(s) "
            f"need rank {expected_rank}; fix input.crop_scales in the spec"
        )
    for key, name in (
        ("age", spec.age_output),
        ("age_std", spec.age_std_output),
        ("gender", spec.gender_output),
    ):
        if name and name not in outputs:
            raise ModelSpecError(
                f"{source}: the ONNX graph has no output named {name!r} (output.{key} of the "
                f"spec of {spec.name!r}); its outputs are {outputs}. "
                "Fix the spec (faceage.json) or the export."
            )
