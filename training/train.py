"""Train one model on the cached UTKFace crops.

    python -m training.train c3ae [--epochs N] [--seed S] [--fresh] [--stop-after N]

Reads ``training/configs/NAME.json``; checkpoints go to ``runs/NAME/`` (``last.pt``
every epoch, ``best.pt`` at the best validation score), and a run restarts from
``last.pt`` when there is one. Every epoch draws its shuffling, augmentation and
dropout from a generator seeded by (seed, epoch), so a resumed run repeats exactly what
an uninterrupted one does. The model is chosen on val; test is evaluated once, on
the chosen checkpoint, and written to ``training/results/NAME.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.augment import augment, normalize, to_unit_rgb
from training.data import cache_dir, cache_meta
from training.datasets import REPO_ROOT, SPLITS, get_dataset, mixture
from training.distill import distilling
from training.ema import WeightAverage, averaging
from training.models import build_model, count_params, gender_probability
from training.models.common import AGE_MAX

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RUNS_DIR = REPO_ROOT / "runs"


def load_config(name: str) -> dict[str, Any]:
    path = CONFIG_DIR / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise SystemExit(f"no config {path}; known: {', '.join(known)}")
    config = json.loads(path.read_text())
    config["name"] = name
    return config


def train_command(config: dict[str, Any], name: str) -> str:
    """The shell command that trains ``name``, earlier stages (``init_from``) first."""
    command = f"python -m training.train {name}"
    if config.get("init_from"):
        return (
            f"{train_command(load_config(config['init_from']), config['init_from'])} && {command}"
        )
    return command


class CachedSplit:
    """One split of the config's data sets' crop caches, one after the other, holding
    only the crop scales a model uses; ``source[i]`` is row i's index in ``names``.
    Photos their data set drops when no face is found are left out."""

    def __init__(self, config: dict[str, Any], split: str) -> None:
        size = config["input_size"]
        cache_scales = tuple(config.get("cache_scales", [0.8, 1.0, 1.25]))
        scale_index = [cache_scales.index(s) for s in config["crop_scales"]]
        self.names = list(mixture(config))
        parts: dict[str, list[np.ndarray]] = {
            key: [] for key in ("crops", "ages", "genders", "detected", "source")
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
        joined = {key: np.concatenate(value) for key, value in parts.items()}
        self.crops, self.ages, self.genders = joined["crops"], joined["ages"], joined["genders"]
        self.detected, self.source = joined["detected"], joined["source"]

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


def learning_rate(
    config: dict[str, Any], step: int, total_steps: int, steps_per_epoch: int
) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction * lr``.

    ``schedule_epochs`` (e.g. ``[9, 30]``) records a run that was first trained on a
    shorter cosine and then resumed with ``--epochs 30``: steps of the first 9 epochs
    follow the 9-epoch cosine, later ones the 30-epoch cosine, so one command replays it.
    """
    for epochs in config.get("schedule_epochs", []):
        if step < epochs * steps_per_epoch:
            total_steps = epochs * steps_per_epoch
            break
    warmup = config.get("warmup_epochs", 1) * steps_per_epoch
    base, final = config["lr"], config["lr"] * config.get("final_lr_fraction", 0.01)
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress))


def make_optimizer(config: dict[str, Any], model: torch.nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.get("weight_decay", 0.0)},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.get("optimizer", "adamw") == "sgd":
        return torch.optim.SGD(groups, lr=config["lr"], momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config["lr"])


def train(
    name: str,
    *,
    epochs: int | None = None,
    seed: int | None = None,
    fresh: bool = False,
    limit_batches: int | None = None,
    threads: int | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    config = load_config(name)
    if epochs is not None:
        config["epochs"] = epochs
    if seed is not None:
        config["seed"] = seed
    seed = config.setdefault("seed", 0)
    if threads is not None:
        config["threads"] = threads
    torch.set_num_threads(config.get("threads", 2))
    torch.manual_seed(seed)
    run_dir = RUNS_DIR / name
    run_dir.mkdir(parents=True, exist_ok=True)

    train_set, val_set = CachedSplit(config, "train"), CachedSplit(config, "val")
    train_ages, train_genders = train_set.ages, train_set.genders.astype(np.float32)
    label_ages, label_genders = train_ages, train_genders
    online = None
    if config.get("distill", {}).get("online"):
        from training.distill import OnlineTeachers  # the teachers label every batch

        online = OnlineTeachers(config, train_set)
    elif config.get("distill"):
        from training.distill import blend, soft_targets  # runs the teachers' ONNX files

        teacher_ages, teacher_genders = soft_targets(config, train_set.ages)
        weight = config["distill"]["weight"]
        train_ages = blend(train_ages, teacher_ages, weight)
        train_genders = blend(train_genders, teacher_genders, weight)
    model = build_model(config["architecture"], config.get("model_options"))
    starting = fresh or not (run_dir / "last.pt").exists()  # not resuming this run
    if config.get("init_from") and starting:
        # a later stage starts from an earlier run's chosen weights (same architecture)
        start = torch.load(RUNS_DIR / config["init_from"] / "best.pt", weights_only=False)
        model.load_state_dict(start["model"])
        print(f"{name}: initialised from {config['init_from']} epoch {start['epoch']}", flush=True)
    if config.get("init_from_onnx") and starting:
        # a warm restart from a committed ONNX file: checkpoints do not outlive the machine
        from training.warm_start import AGE_PART, GENDER_PART, warm_start

        worst = warm_start(
            model,
            config["init_from_onnx"],
            lambda rows: normalize(train_set.inputs(np.sort(rows))),
            len(train_set),
            # a gender net packed with the age net it serves is the file's second network
            part=GENDER_PART if "age_from" in config.get("export", {}) else AGE_PART,
        )
        print(f"{name}: initialised from {config['init_from_onnx']} ({worst:.4g})", flush=True)
    if config.get("channels_last", True):  # 1.5-2.5x faster convolutions on CPU
        model = model.to(memory_format=torch.channels_last)
    refit_history: list[dict[str, Any]] = []
    if config.get("head_refit") and starting and limit_batches is None:
        from training.head_refit import features_key, refit_heads

        refit_targets = (
            (train_ages, train_genders) if distilling(config, 0) else (label_ages, label_genders)
        )
        torch.manual_seed(seed)  # the reset modules start as a fresh model of this seed has them
        refit_history = refit_heads(
            model,
            build_model(config["architecture"], config.get("model_options")),
            config,
            (lambda rows: normalize(train_set.inputs(rows)), *refit_targets),
            lambda ages: selection_score(metrics(val_set, ages, None)),
            (lambda rows: normalize(val_set.inputs(rows)), len(val_set)),
            lambda rows, generator: normalize(
                augment(train_set.inputs(rows), config.get("augment", {}), generator)
            ),
            # features of a committed file's trunk are the same for every refit of it
            cache=RUNS_DIR / "refit-features" / f"{features_key(config)}.pt"
            if config.get("init_from_onnx")
            else None,
        )
    optimizer = make_optimizer(config, model)
    batch_size = config["batch_size"]
    weights = mixture(config)
    drawn = sum(round(w * int(train_set.rows_of(n).sum())) for n, w in weights.items())
    steps_per_epoch = drawn // batch_size
    total_steps = steps_per_epoch * config["epochs"]
    state = {"epoch": 0, "best_score": float("inf"), "best_epoch": -1, "history": []}
    last = run_dir / "last.pt"
    if refit_history:  # the refitted model is epoch 0: kept unless an epoch beats it on val
        state["history"] = refit_history
        state["best_score"] = min(record["val_score"] for record in refit_history)
        state["best_epoch"] = 0
        save_checkpoints(run_dir, model, optimizer, state, config, best=True)
    average: WeightAverage | None = None
    if last.exists() and not fresh and not refit_history:
        checkpoint = torch.load(last, weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state = checkpoint["state"]
        if checkpoint.get("ema") is not None:
            average = WeightAverage(model, config["ema"]["decay"])
            average.load_state_dict(checkpoint["ema"])
        print(f"resumed {name} after epoch {state['epoch']}", flush=True)

    # a probe runs the first epochs of the configured schedule, not a shorter schedule
    last_epoch = min(config["epochs"], stop_after or config["epochs"])
    for epoch in range(state["epoch"], last_epoch):
        # a run switched to (or from) autocast on resume records the epochs it ran under it
        first, stop = config.get("autocast_bf16_epochs", [0, config["epochs"]])
        autocast = config.get("autocast_bf16", False) and first <= epoch < stop
        distilled = distilling(config, epoch)
        if average is None and averaging(config, epoch):
            average = WeightAverage(model, config["ema"]["decay"])
        epoch_ages = train_ages if distilled else label_ages
        epoch_genders = train_genders if distilled else label_genders
        started = time.time()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        torch.manual_seed(seed * 100_003 + epoch)  # dropout
        order = epoch_order(train_set, mixture(config), generator)
        model.train()
        frozen = epoch < config.get("freeze_backbone_epochs", 0)
        for param in model.backbone.parameters() if hasattr(model, "backbone") else ():
            param.requires_grad_(not frozen)  # head first, then the whole network
        losses = []
        for batch in range(steps_per_epoch):
            if limit_batches is not None and batch >= limit_batches:
                break
            step = epoch * steps_per_epoch + batch
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step, total_steps, steps_per_epoch)
            rows = np.sort(order[batch * batch_size : (batch + 1) * batch_size])
            view_state = generator.get_state()
            x = augment(train_set.inputs(rows), config.get("augment", {}), generator)
            if online is not None and distilled:
                x, ages, genders = online.batch(rows, x, view_state, generator)
            else:
                ages = torch.from_numpy(epoch_ages[rows])
                genders = torch.from_numpy(epoch_genders[rows])
            # bfloat16 autocast: ~1.7x faster convolutions on a CPU with AVX512-BF16;
            # the loss, the optimiser state, validation and export stay float32
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = model(normalize(x))
            out = {key: value.float() for key, value in out.items()}
            loss = model.loss(out, ages, genders)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.get("clip_grad_norm"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), config["clip_grad_norm"])
            optimizer.step()
            if average is not None:
                average.update(model)
            losses.append(loss.item())
        train_seconds = time.time() - started
        val, val_mirrored, score = validate(average.model if average else model, val_set, config)
        record = {
            "epoch": epoch + 1,
            "train_loss": round(float(np.mean(losses)), 4),
            "val": val,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(time.time() - started, 1),
            "train_seconds": round(train_seconds, 1),
        }
        if val_mirrored is not None:
            record["val_mirrored"] = val_mirrored
            record["val_score"] = round(score, 5)
        if average is not None:  # what the raw weights would have scored
            record["val_raw"] = metrics(val_set, *predict(model, val_set))
        if limit_batches is not None:  # a timing run: leave the checkpoints alone
            print(json.dumps(record), flush=True)
            return record
        state["history"].append(record)
        state["epoch"] = epoch + 1
        better = score < state["best_score"]
        if better:
            state["best_score"], state["best_epoch"] = score, epoch + 1
        save_checkpoints(run_dir, model, optimizer, state, config, best=better, average=average)
        print(json.dumps(record), flush=True)

    return write_results(name, config, model, state)


def save_checkpoints(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    config: dict[str, Any],
    *,
    best: bool,
    average: WeightAverage | None = None,
) -> None:
    """``last.pt`` (to resume from) and, when ``best``, ``best.pt`` after ``state["epoch"]``;
    with a weight ``average`` running, ``best.pt`` holds the average, ``last.pt`` both."""
    if best:
        chosen = average.model if average is not None else model
        torch.save(
            {"model": chosen.state_dict(), "config": config, "epoch": state["epoch"]},
            run_dir / "best.pt",
        )
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "state": state,
            "config": config,
            "ema": average.state_dict() if average is not None else None,
        },
        run_dir / "last.pt.tmp",
    )
    (run_dir / "last.pt.tmp").replace(run_dir / "last.pt")


def write_results(
    name: str, config: dict[str, Any], model: torch.nn.Module, state: dict[str, Any]
) -> dict[str, Any]:
    """Evaluate the chosen (best-val) checkpoint on val and, once, on test."""
    best = torch.load(RUNS_DIR / name / "best.pt", weights_only=False)
    model.load_state_dict(best["model"])
    evaluation: dict[str, Any] = {}
    for split in ("val", "test"):
        data = CachedSplit(config, split)
        ages, genders = predict(model, data)
        evaluation[split] = metrics(data, ages, genders)
        evaluation[f"{split}_detected_only"] = metrics(data, ages, genders, data.detected)
    cache_scales = tuple(config.get("cache_scales", [0.8, 1.0, 1.25]))
    weights = mixture(config)
    metas = {d: cache_meta(config["input_size"], cache_scales, d) for d in weights}
    seconds = [r["train_seconds"] for r in state["history"] if "train_seconds" in r]
    results = {
        "name": name,
        "architecture": config["architecture"],
        "params": count_params(model),
        "config": config,
        "seed": config["seed"],
        "data": {
            "datasets": {
                dataset: {
                    "description": get_dataset(dataset).description,
                    "sampling_weight": weight,
                    "train_images": metas[dataset]["per_split"]["train"]["images"],
                    "crop_cache": metas[dataset],
                }
                for dataset, weight in weights.items()
            },
            "split": "each data set's fixed train/val/test of its labels.csv",
            "selection": "best val score; with several data sets the mean of their scores",
            "evaluated_on": "cached crops (faceage RetinaFace + context_crops)",
        },
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "seconds_per_epoch": round(float(np.median(seconds)), 1) if seconds else None,
        "metrics": evaluation,
        "history": state["history"],
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"val": evaluation["val"], "test": evaluation["test"]}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Train one faceage model on cached UTKFace crops.")
    parser.add_argument("name")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--fresh", action="store_true", help="ignore runs/NAME/last.pt")
    parser.add_argument("--limit-batches", type=int, help="time a few batches of one epoch")
    parser.add_argument("--threads", type=int, help="torch threads (default: config, else 2)")
    parser.add_argument(
        "--stop-after", type=int, help="stop after this many epochs of the configured schedule"
    )
    args = parser.parse_args()
    train(
        args.name,
        epochs=args.epochs,
        seed=args.seed,
        fresh=args.fresh,
        limit_batches=args.limit_batches,
        threads=args.threads,
        stop_after=args.stop_after,
    )


if __name__ == "__main__":
    main()
