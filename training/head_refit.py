"""Refit a warm-started net's heads on the features of its frozen trunk.

A softmax head can collapse onto a bin whose trained end-point has drifted: the
shipped sephsrnet (commit d95a21c) never predicted under 7.28 years, because every
young face went to stage H's bin 5 (end-point moved from 19.4 to 11.2 years) and stage
L's bin 4 (0.5 -> -3.9), each with a softmax so saturated (logit 19.6 against <= 8)
that no gradient could move it. More epochs cannot undo that; new heads can.

    "head_refit": {"reset": ["stage_h.head.5", "stage_h.value"], "epochs": 30,
                   "lr": 0.001, "batch_size": 128, "weight_decay": 0.0001}

re-initialises the named modules as a fresh model of the run's seed has them, runs the
trunk (``model.trunk``: the modules ``model.features`` goes through) once in eval
mode over the un-augmented training and val crops (``"flip": true``: and over the
mirrored training crops, as more training rows), then trains every parameter outside
the trunk on those features (AdamW, cosine learning rate, the model's own loss) and
keeps the epoch with the best val score. The model needs ``features(x)`` and
``from_features(maps)`` with ``forward = from_features o features``.
``"train_blocks": N`` (a model with ``train_last_blocks``, e.g. mobileagenet) moves the
trunk's last N blocks out of it: they are trained with the heads, on the features of
the layer before them.

The trunk's features depend only on the starting weights, the crops and the passes,
not on the head settings, so ``train`` keeps them on disk (``runs/refit-features/``,
named by a hash of those) and a second refit of the same start skips the extraction:
refit settings can be compared on val in minutes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.models.common import AGE_MAX
from training.schedule import learning_rate


def reset_modules(model: nn.Module, fresh: nn.Module, names: list[str]) -> None:
    """Give ``model``'s submodules ``names`` the weights ``fresh`` has there."""
    modules = dict(model.named_modules())
    initial = dict(fresh.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise ValueError(f"head_refit.reset names no module of the model: {unknown}")
    for name in names:
        modules[name].load_state_dict(initial[name].state_dict())


def trunk_features(
    model: nn.Module, inputs: Callable[[np.ndarray], torch.Tensor], rows: int, batch: int = 128
) -> torch.Tensor:
    """``model.features`` of every row, in eval mode, stored as float16."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, rows, batch):
            x = inputs(np.arange(start, min(start + batch, rows)))
            out.append(model.features(x).to(torch.float16))
    return torch.cat(out)


def features_key(config: dict[str, Any]) -> str:
    """What the trunk features of a refit depend on, hashed: the starting weights, the
    crops and the training passes (not the head settings)."""
    settings = config["head_refit"]
    parts = {
        "start": config["init_from_onnx"],  # only a committed file's features are kept
        "architecture": config["architecture"],
        "input_size": config["input_size"],
        "crop_scales": config["crop_scales"],
        "cache_scales": config.get("cache_scales"),
        "seed": config.get("seed", 0),
        "flip": settings.get("flip", False),
        "augmented_copies": settings.get("augmented_copies", 0),
        "augment": config.get("augment") if settings.get("augmented_copies") else None,
    }
    if settings.get("train_blocks"):  # (absent otherwise: keys of earlier caches stand)
        parts["train_blocks"] = settings["train_blocks"]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    trunk = {id(p) for name in model.trunk for p in model.get_submodule(name).parameters()}
    return [p for p in model.parameters() if id(p) not in trunk]


def refit_heads(
    model: nn.Module,
    fresh: nn.Module,
    config: dict[str, Any],
    train: tuple[Callable[[np.ndarray], torch.Tensor], np.ndarray, np.ndarray],
    score: Callable[[np.ndarray], float],
    val_inputs: tuple[Callable[[np.ndarray], torch.Tensor], int],
    augmented: Callable[[np.ndarray, torch.Generator], torch.Tensor] | None = None,
    cache: Path | None = None,
) -> list[dict[str, Any]]:
    """Run the ``head_refit`` stage of ``config`` on ``model`` in place.

    ``train`` is (inputs of rows, age targets, gender targets); ``score(val ages)`` is
    the val selection score (lower is better); ``val_inputs`` is (inputs, rows). Returns
    one record per epoch; the model ends with the best-scoring epoch's heads.
    ``augmented(rows, generator)`` gives randomly augmented inputs of rows, for the
    setting ``"augmented_copies": N`` (N more passes over the training faces, each face
    augmented afresh, as more training rows).
    """
    settings = config["head_refit"]
    if not all(hasattr(model, attr) for attr in ("trunk", "features", "from_features")):
        raise ValueError(
            f"{config['architecture']} has no trunk/features/from_features: "
            "head_refit cannot split it"
        )
    if settings.get("train_blocks"):
        if not hasattr(model, "train_last_blocks"):
            raise ValueError(f"{config['architecture']} cannot train part of its trunk")
        model.train_last_blocks(settings["train_blocks"])
    seed = config.get("seed", 0)
    reset_modules(model, fresh, settings.get("reset", []))
    train_inputs, ages, genders = train
    started = time.time()
    # each pass over the training faces gives the heads one more row per face
    passes = [train_inputs]
    if settings.get("flip", False):
        passes.append(lambda rows: train_inputs(rows).flip(-1))
    copies = settings.get("augmented_copies", 0)
    if copies and augmented is None:
        raise ValueError("head_refit.augmented_copies needs the augmented training inputs")
    for copy in range(copies):
        generator = torch.Generator().manual_seed(seed * 100_003 + 50_000 + copy)
        passes.append(lambda rows, g=generator: augmented(rows, g))
    if cache is not None and cache.exists():
        stored = torch.load(cache, weights_only=True)
        train_maps, val_maps = stored["train"], stored["val"]
        print(f"head_refit: trunk features from {cache}", flush=True)
    else:
        train_maps = torch.cat([trunk_features(model, inputs, len(ages)) for inputs in passes])
        val_maps = trunk_features(model, *val_inputs)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(".partial")
            torch.save({"train": train_maps, "val": val_maps}, partial)
            partial.replace(cache)
    if len(train_maps) != len(ages) * len(passes) or len(val_maps) != val_inputs[1]:
        raise ValueError(f"{cache} holds features of other rows: delete it")
    ages, genders = np.tile(ages, len(passes)), np.tile(genders, len(passes))
    extract_seconds = time.time() - started

    params = head_parameters(model)
    optimizer = torch.optim.AdamW(
        params, lr=settings["lr"], weight_decay=settings.get("weight_decay", 0.0)
    )
    schedule = {"lr": settings["lr"], "warmup_epochs": 0, "final_lr_fraction": 0.0}  # cosine
    batch = settings.get("batch_size", 128)
    steps = len(ages) // batch
    total = steps * settings["epochs"]
    torch.manual_seed(seed)  # dropout in the heads
    generator = torch.Generator().manual_seed(seed)
    best_score, best_state = math.inf, None
    history = []
    for epoch in range(settings["epochs"]):
        started = time.time()
        model.train()
        order = torch.randperm(len(ages), generator=generator).numpy()
        losses = []
        for step in range(steps):
            lr = learning_rate(schedule, epoch * steps + step, total, steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rows = np.sort(order[step * batch : (step + 1) * batch])
            out = model.from_features(train_maps[rows].float())
            loss = model.loss(out, torch.from_numpy(ages[rows]), torch.from_numpy(genders[rows]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            predicted = torch.cat(
                [
                    model.from_features(val_maps[i : i + 512].float())["age"]
                    for i in range(0, len(val_maps), 512)
                ]
            )
        value = score(predicted.clamp(0, AGE_MAX).numpy())
        if value < best_score:
            best_score = value
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        record = {
            "stage": "head_refit",
            "epoch": epoch + 1,
            "train_loss": round(float(np.mean(losses)), 4),
            "val_score": round(value, 4),
            "seconds": round(time.time() - started + (extract_seconds if epoch == 0 else 0), 1),
        }
        history.append(record)
        print(json.dumps(record), flush=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history
