"""Several registered models on one set of crops, their ages (and genders) averaged.

The crops are cut once, at the largest member's size and at the union of the members'
context scales. Each member reads its own scales, resized to its input size with area
interpolation (on the UTKFace val split, c3ae read 64 px crops resized from 112 px ones
to within 0.01 years of its MAE on crops cut at 64 px).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import cv2
import numpy as np

from faceage.inference import AgeModel, AgeOutputs
from faceage.runtime import ProviderList
from faceage.spec import EnsembleSpec, ModelSpec


class EnsembleModel:
    """One :class:`~faceage.inference.AgeModel` per member of an :class:`EnsembleSpec`.

    Args:
        spec: the ensemble.
        model_paths: each member's verified ONNX file, by member name.
        providers, intra_op_num_threads, max_batch_size: as for ``AgeModel``.
    """

    def __init__(
        self,
        spec: EnsembleSpec,
        model_paths: Mapping[str, str | os.PathLike[str]],
        *,
        providers: ProviderList | None = None,
        intra_op_num_threads: int | None = None,
        max_batch_size: int = 64,
    ) -> None:
        missing = [m.name for m in spec.members if m.name not in model_paths]
        if missing:
            raise ValueError(f"ensemble {spec.name!r}: no ONNX file given for {missing}")
        self.spec = spec
        self.models = {
            member.name: AgeModel(
                member,
                model_paths[member.name],
                providers=providers,
                intra_op_num_threads=intra_op_num_threads,
                max_batch_size=max_batch_size,
            )
            for member in spec.members
        }

    def run_crops(self, crops: np.ndarray) -> AgeOutputs:
        """Averaged outputs for uint8 BGR crops ``(N, K, S, S, 3)`` in the ensemble's layout."""
        outputs = {
            name: model.run_crops(member_crops(crops, self.spec, model.spec))
            for name, model in self.models.items()
        }
        female = [
            p
            for name in self.spec.gender_from
            if (p := outputs[name].female_probability) is not None
        ]
        ages = np.stack([outputs[name].age for name in self.spec.age_from])
        return AgeOutputs(
            age=ages.mean(axis=0),
            age_std=None,
            female_probability=np.mean(female, axis=0) if female else None,
            member_spread=ages.std(axis=0),
        )


def member_crops(crops: np.ndarray, ensemble: EnsembleSpec, member: ModelSpec) -> np.ndarray:
    """The member's crops out of the ensemble's: its scales, at its input size."""
    picked = crops[:, [ensemble.crop_scales.index(s) for s in member.crop_scales]]
    size = member.input_size
    if picked.shape[2] == size:
        return picked
    out = np.empty((*picked.shape[:2], size, size, 3), dtype=picked.dtype)
    interpolation = cv2.INTER_AREA if size < picked.shape[2] else cv2.INTER_LINEAR
    for face, scale in np.ndindex(*picked.shape[:2]):
        out[face, scale] = cv2.resize(
            picked[face, scale], (size, size), interpolation=interpolation
        )
    return out
