"""The cached crops of a config's data sets as train / val / test splits, and the figures
measured on them (MAE, CS(5), gender accuracy, per data set)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from training.augment import normalize, to_unit_rgb
from training.data import cache_dir
from training.datasets import SPLITS, get_dataset, mixture
from training.models import gender_probability
from training.models.common import AGE_MAX


class CachedSplit:
    """One split of the config's data sets' crop caches, one after the other, holding
    only the crop scales a model uses; ``source[i]`` is row i's index in ``names`` and
    ``index[i]`` its row in that data set's labels file. Photos their data set drops
    when no face is found are left out."""

    def __init__(self, config: dict[str, Any], split: str) -> None:
        size = config["input_size"]
        cache_scales = tuple(config.get("cache_scales", [0.8, 1.0, 1.25]))
        scale_index = [cache_scales.index(s) for s in config["crop_scales"]]
        self.names = list(mixture(config))
        parts: dict[str, list[np.ndarray]] = {
            key: [] for key in ("crops", "ages", "genders", "detected", "source", "index")
        }
        for number, name in enumerate(self.names):
            root = cache_dir(size, cache_scales, name)
            if not (root / "meta.json").exists():
                raise SystemExit(
                    f"no crop cache at {root}; run: python -m training.data --dataset {name} "
                    f"--size {size} --scales {' '.join(f'{s:g}' for s in cache_scales)}"
                )
            keep = np.load(root / "splits.npy") == SPLITS.index(split)
            detected = np.load(root / "detected.npy")
            if get_dataset(name).when_no_face == "drop":
                keep &= detected
            index = np.flatnonzero(keep)
            crops = np.load(root / "crops.npy", mmap_mode="r")
            parts["crops"].append(np.ascontiguousarray(crops[index][:, scale_index]))
            parts["ages"].append(np.load(root / "ages.npy")[index])
            parts["genders"].append(np.load(root / "genders.npy")[index])
            parts["detected"].append(detected[index])
            parts["source"].append(np.full(len(index), number, dtype=np.int8))
            parts["index"].append(index)
        joined = {key: np.concatenate(value) for key, value in parts.items()}
        self.crops, self.ages, self.genders = joined["crops"], joined["ages"], joined["genders"]
        self.detected, self.source = joined["detected"], joined["source"]
        self.index = joined["index"]

    def __len__(self) -> int:
        return len(self.ages)

    def inputs(self, rows: np.ndarray) -> torch.Tensor:
        return to_unit_rgb(self.crops[rows])

    def rows_of(self, name: str) -> np.ndarray:
        return self.source == self.names.index(name)


def epoch_order(
    data: CachedSplit, weights: dict[str, float], generator: torch.Generator
) -> np.ndarray:
    """One epoch's rows, shuffled: each data set's rows drawn ``weight`` times (whole
    passes, then a random part of the rows for the fraction left). With one data set at
    weight 1 it is the same permutation as before data sets were a parameter."""
    if len(data.names) == 1 and weights[data.names[0]] == 1.0:
        return torch.randperm(len(data), generator=generator).numpy()
    drawn = []
    for name in data.names:
        rows = np.flatnonzero(data.rows_of(name))
        whole, part = divmod(weights[name], 1.0)
        drawn += [rows] * int(whole)
        count = round(part * len(rows))
        if count:
            pick = torch.randperm(len(rows), generator=generator)[:count].numpy()
            drawn.append(rows[pick])
    order = np.concatenate(drawn)
    return order[torch.randperm(len(order), generator=generator).numpy()]


def predict(
    model: torch.nn.Module, data: CachedSplit, batch_size: int = 512, *, mirrored: bool = False
):
    """Ages and (if the model has one) P(female) for every row of a split (``mirrored``:
    of every row's mirror image)."""
    model.eval()
    ages, genders = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            rows = np.arange(start, min(start + batch_size, len(data)))
            x = normalize(data.inputs(rows))
            out = model(x.flip(-1) if mirrored else x)
            if "age" in out:
                ages.append(out["age"].clamp(0, AGE_MAX).numpy())
            if "gender" in out or "gender_logit" in out:
                genders.append(gender_probability(out).numpy())
    return (np.concatenate(ages) if ages else None, np.concatenate(genders) if genders else None)


def metrics(
    data: CachedSplit,
    ages: np.ndarray | None,
    genders: np.ndarray | None,
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """MAE, CS(5) and gender accuracy over all rows (or ``mask``); with more than one
    data set, the same per data set under ``by_dataset``."""
    mask = np.ones(len(data), dtype=bool) if mask is None else mask
    result: dict[str, Any] = _figures(data, ages, genders, mask)
    if len(data.names) > 1:
        result["by_dataset"] = {
            name: _figures(data, ages, genders, mask & data.rows_of(name)) for name in data.names
        }
    return result


def _figures(
    data: CachedSplit, ages: np.ndarray | None, genders: np.ndarray | None, mask: np.ndarray
) -> dict[str, float]:
    result: dict[str, float] = {"images": int(mask.sum())}
    if ages is not None:
        error = np.abs(ages[mask] - data.ages[mask])
        result["mae"] = round(float(error.mean()), 4)
        result["cs5"] = round(float((error <= 5).mean()), 4)
    if genders is not None:
        correct = (genders[mask] >= 0.5) == (data.genders[mask] == 1)
        result["gender_accuracy"] = round(float(correct.mean()), 4)
        for label, code in (("female", 1), ("male", 0)):
            chosen = data.genders[mask] == code
            if chosen.any():
                result[f"gender_accuracy_{label}"] = round(float(correct[chosen].mean()), 4)
    return result


def selection_score(result: dict[str, Any]) -> float:
    """Lower is better: val MAE, or val gender error for a gender-only net. With several
    data sets, the mean of their scores: each set counts alike, however many faces it
    holds, so the larger one does not choose the epoch alone."""
    if "by_dataset" in result:
        scores = [selection_score(r) for r in result["by_dataset"].values()]
        return float(np.mean(scores))
    return result["mae"] if "mae" in result else 1.0 - result["gender_accuracy"]


def validate(
    model: torch.nn.Module, data: CachedSplit, config: dict[str, Any]
) -> tuple[dict[str, float], dict[str, float] | None, float]:
    """Val metrics, those of the mirrored val faces (``"validate_mirrored": true``, else
    None), and the selection score: the mean of both scores when mirrored. A face and its
    mirror image are equally likely photos, so the mean picks epochs less by the luck of
    one orientation."""
    val = metrics(data, *predict(model, data))
    if not config.get("validate_mirrored"):
        return val, None, selection_score(val)
    mirrored = metrics(data, *predict(model, data, mirrored=True))
    return val, mirrored, (selection_score(val) + selection_score(mirrored)) / 2
