"""Train one model on the cached crops of the data sets its config names.

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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.augment import augment, normalize
from training.data import cache_meta
from training.datasets import get_dataset, mixture
from training.distill import distilling
from training.ema import WeightAverage, averaging
from training.models import build_model, count_params
from training.recipes import RESULTS_DIR, RUNS_DIR, load_config
from training.schedule import learning_rate
from training.splits import CachedSplit, epoch_order, metrics, predict, validate


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
    if config.get("distill"):
        from training.distill import blend, soft_targets  # runs the teachers' ONNX files

        teacher_ages, teacher_genders = soft_targets(config, train_set)
        weight = config["distill"]["weight"]
        train_ages = blend(train_ages, teacher_ages, weight)
        train_genders = blend(train_genders, teacher_genders, weight)
    model = build_model(config["architecture"])
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
    optimizer = make_optimizer(config, model)
    batch_size = config["batch_size"]
    weights = mixture(config)
    drawn = sum(round(w * int(train_set.rows_of(n).sum())) for n, w in weights.items())
    steps_per_epoch = drawn // batch_size
    total_steps = steps_per_epoch * config["epochs"]
    state = {"epoch": 0, "best_score": float("inf"), "best_epoch": -1, "history": []}
    last = run_dir / "last.pt"
    average: WeightAverage | None = None
    if last.exists() and not fresh:
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
            x = augment(train_set.inputs(rows), config.get("augment", {}), generator)
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
