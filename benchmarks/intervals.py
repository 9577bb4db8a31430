"""Calibrated age intervals: fit on the val splits, measure on the test splits.

    python -m benchmarks.intervals                      # every model and ensemble
    python -m benchmarks.intervals --update-manifest    # ... and write their age_interval
    python -m benchmarks.intervals --models c3ae,ensemble

For every model, each face of UTKFace and All-Age-Faces (val and test) is scored once
through the pipeline's own functions, with and without its mirror image, and cached by
the weights' sha256 (``benchmarks/interval_data.py``), so after new weights a re-run
costs the new models' forward passes and a few seconds of fitting.

The calibration (``benchmarks/interval_fit.py``) is fitted on UTKFace val + AAF val,
each data set weighing half, for both ways of running a model (``flip``: with the
mirror, ``plain``: without). It is measured on each test split: coverage at 0.5, 0.8,
0.9 and 0.95, mean width, both by age group, the MAE of the faces in the narrowest and
widest quarter of intervals, by detection score and face size, and what computing the
interval costs against the model's time. The shift check fits on UTKFace val alone and
measures AAF test. Writes ``benchmarks/results/intervals.json``, ``intervals.md`` and
``interval_coverage.png``; ``--update-manifest`` writes each ``age_interval`` block.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import faceage
from benchmarks.accuracy import AGE_GROUPS, group_name
from benchmarks.common import (
    RESULTS_DIR,
    edit_entries,
    machine_description,
    read_dataset,
    write_json,
)
from benchmarks.interval_data import detections, predictions
from benchmarks.interval_fit import FitData, fit_table, table_to_json
from benchmarks.interval_report import markdown, plot
from faceage.intervals import IntervalMaker, IntervalTable
from faceage.spec import EnsembleSpec, load_manifest

DATASETS = ("utkface", "aaf")
REPORT_LEVELS = (0.5, 0.8, 0.9, 0.95)
PLOT_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
MAIN_LEVEL = 0.8
TARGET = (0.78, 0.82)  # 0.8 coverage per test split
GROUP_TARGET = (0.70, 0.90)  # ... and per true-age group of 100+ faces
GROUP_BALANCES = (0.0, 0.5, 1.0)  # tried on val; see face_weights
FITTED_ON = (
    "UTKFace val + All-Age-Faces val, each data set weighing half and, within one, its "
    "true-age groups weighing as they come, as the square root of their size or the "
    "same, whichever misses the targets least on val (RetinaFace faces)"
)
COMMAND = "python -m benchmarks.intervals --update-manifest"


def load_split(name: str, dataset: str, split: str) -> dict[str, np.ndarray]:
    """The faces of one split that were found: true age and the model's raw outputs."""
    rows = read_dataset(dataset, split)
    tag = f"{dataset}_{split}"
    found = detections(rows, tag)
    raw = predictions(name, rows, found, tag)
    keep = found["found"]
    box = found["box"]
    return {
        "true": np.array([r.age for r in rows], dtype=np.float64)[keep],
        "score": found["score"][keep],
        "face_size": np.minimum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])[keep],
        **{key: value[keep] for key, value in raw.items()},
    }


def run_inputs(faces: dict[str, np.ndarray], variant: str) -> dict[str, Any]:
    """The age and signals a run with (``flip``) or without (``plain``) the mirror gives,
    computed as ``AgeEstimator._run`` computes them."""
    spread = faces["spread"] if not np.isnan(faces["spread"]).all() else None
    if variant == "plain":
        return {"age": faces["age"], "flip_gap": None, "member_spread": spread}
    return {
        "age": (faces["age"] + faces["age_mirror"]) / 2,
        "flip_gap": np.abs(faces["age"] - faces["age_mirror"]),
        "member_spread": None if spread is None else (faces["spread"] + faces["spread_mirror"]) / 2,
    }


def features_for(variant: str, ensemble: bool) -> list[str]:
    names = ["const", "log_age"]
    if ensemble:
        names.append("log_member_spread")
    if variant == "flip":
        names.append("log_flip_gap")
    return names


def face_weights(true: np.ndarray, group_balance: float) -> np.ndarray:
    """Weights summing to 1 over one data set's faces; ``group_balance`` 1 makes every
    true-age group weigh the same, 0 every face, 0.5 the square root in between."""
    groups = np.array([group_name(t) for t in true])
    _, index, counts = np.unique(groups, return_inverse=True, return_counts=True)
    weight = np.power(1.0 / counts[index], group_balance)
    return np.asarray(weight / weight.sum(), dtype=np.float64)


def fit(
    parts: Sequence[dict[str, np.ndarray]],
    variant: str,
    ensemble: bool,
    *,
    group_balance: float = 0.0,
) -> IntervalTable:
    """A table fitted on ``parts`` (one per data set), each data set weighing the same."""
    inputs = [run_inputs(p, variant) for p in parts]

    def joined(key: str) -> np.ndarray | None:
        values = [i[key] for i in inputs]
        return None if values[0] is None else np.concatenate(values)

    data = FitData(
        true=np.concatenate([p["true"] for p in parts]),
        age=np.concatenate([i["age"] for i in inputs]),
        weight=np.concatenate([face_weights(p["true"], group_balance) for p in parts]),
        flip_gap=joined("flip_gap"),
        member_spread=joined("member_spread"),
    )
    return fit_table(features_for(variant, ensemble), data)


def target_miss(
    table: IntervalTable, parts: Sequence[dict[str, np.ndarray]], variant: str
) -> float:
    """How far the 0.8 coverage on ``parts`` lies outside the targets, summed (0: all
    met): 78-82% per data set, 70-90% per true-age group of 100+ faces."""
    miss = 0.0
    for faces in parts:
        report = evaluate(table, faces, variant, levels=(MAIN_LEVEL,))
        coverage = report["levels"][str(MAIN_LEVEL)]["coverage"]
        miss += max(0.0, TARGET[0] - coverage, coverage - TARGET[1])
        for group in report["age_groups"].values():
            if group["n"] >= 100:
                c = group["coverage"]
                miss += max(0.0, GROUP_TARGET[0] - c, c - GROUP_TARGET[1])
    return miss


def fit_on_val(
    parts: Sequence[dict[str, np.ndarray]], variant: str, ensemble: bool
) -> tuple[IntervalTable, float]:
    """The table (and its ``group_balance``) that misses the targets least on val."""
    fitted = [
        (fit(parts, variant, ensemble, group_balance=balance), balance)
        for balance in GROUP_BALANCES
    ]
    misses = [target_miss(table, parts, variant) for table, _ in fitted]
    return fitted[int(np.argmin(misses))]


def evaluate(
    table: IntervalTable,
    faces: dict[str, np.ndarray],
    variant: str,
    *,
    levels: Sequence[float] = (*REPORT_LEVELS, *PLOT_LEVELS),
) -> dict[str, Any]:
    """Coverage and width of ``table``'s intervals on ``faces``."""
    inputs = run_inputs(faces, variant)
    age, true = inputs["age"], faces["true"]
    signals = {k: inputs[k] for k in ("flip_gap", "member_spread")}

    def at(level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        made = IntervalMaker(table, level, (0.0, 116.0))(age, **signals)
        return (true >= made.low) & (true <= made.high), made.high - made.low, made.std

    report: dict[str, Any] = {"n": len(true), "mae": float(np.mean(np.abs(true - age)))}
    report["levels"] = {
        str(level): {"coverage": float(c.mean()), "width": float(w.mean())}
        for level in sorted(set(levels))
        for c, w, _ in [at(level)]
    }
    covered, width, std = at(MAIN_LEVEL)
    error = np.abs(true - age)
    report["rmse"] = float(np.sqrt(np.mean(error**2)))
    report["rms_age_std"] = float(np.sqrt(np.mean(std**2)))
    groups = np.array([group_name(t) for t in true])
    report["age_groups"] = {
        name: {
            "n": int(inside.sum()),
            "coverage": float(covered[inside].mean()),
            "width": float(width[inside].mean()),
            "mae": float(error[inside].mean()),
        }
        for lo, hi in AGE_GROUPS
        for name in [f"{lo}+" if hi >= 200 else f"{lo}-{hi}"]
        for inside in [groups == name]
        if inside.any()
    }
    order = np.argsort(width, kind="stable")
    quarter = len(order) // 4
    narrow, wide = order[:quarter], order[-quarter:]
    # The same split within each predicted-age bin: what the per-face signal buys
    # beyond the predicted age.
    bins = table.bins(age)
    low_q, high_q = [], []
    for b in np.unique(bins):
        inside = np.flatnonzero(bins == b)
        ranked = inside[np.argsort(width[inside], kind="stable")]
        low_q.append(ranked[: len(ranked) // 4])
        high_q.append(ranked[len(ranked) - len(ranked) // 4 :])
    within_narrow, within_wide = np.concatenate(low_q), np.concatenate(high_q)
    report["quarters"] = {
        "narrow_mae": float(error[narrow].mean()),
        "wide_mae": float(error[wide].mean()),
        "ratio": float(error[wide].mean() / max(error[narrow].mean(), 1e-9)),
        "narrow_width": float(width[narrow].mean()),
        "wide_width": float(width[wide].mean()),
        "within_age_ratio": float(
            error[within_wide].mean() / max(error[within_narrow].mean(), 1e-9)
        ),
    }
    report["by_detection"] = {
        key: quartile_table(faces[key], error, covered, width) for key in ("score", "face_size")
    }
    return report


def quartile_table(
    value: np.ndarray, error: np.ndarray, covered: np.ndarray, width: np.ndarray
) -> list[dict[str, float]]:
    """MAE, coverage and width of the faces in each quartile of ``value``, lowest first."""
    edges = np.quantile(value, [0.25, 0.5, 0.75])
    which = np.searchsorted(edges, value, side="right")
    return [
        {
            "from": float(value[which == q].min()),
            "upto": float(value[which == q].max()),
            "n": int((which == q).sum()),
            "mae": float(error[which == q].mean()),
            "coverage": float(covered[which == q].mean()),
            "width": float(width[which == q].mean()),
        }
        for q in range(4)
        if (which == q).any()
    ]


def interval_cost(name: str, table: IntervalTable, variant: str) -> dict[str, float]:
    """Milliseconds per face of the model's run (with the mirror when ``flip``) and of
    the interval, on a batch of 64 UTKFace val faces, medians of 7 rounds."""
    from faceage.preprocess import face_crops, mirror_crops

    estimator = faceage.AgeEstimator.from_pretrained(
        name, detector=None, flip=variant == "flip", intra_op_num_threads=1
    )
    rows = read_dataset("utkface", "val")[:64]
    found = detections(read_dataset("utkface", "val"), "utkface_val")
    crops = np.concatenate(
        [
            face_crops(
                faceage.images.load_image(str(r.path)), [found["landmarks"][i]], estimator.spec
            )
            for i, r in enumerate(rows)
        ]
    )
    maker = IntervalMaker(table, MAIN_LEVEL, (0.0, 116.0))
    model_times, interval_times = [], []
    for _ in range(7):
        started = time.perf_counter()
        outputs = estimator.model.run_crops(crops)
        if variant == "flip":
            mirrored = estimator.model.run_crops(mirror_crops(crops))
            gap = np.abs(outputs.age - mirrored.age)
        else:
            gap = None
        model_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        maker(outputs.age, flip_gap=gap, member_spread=outputs.member_spread)
        interval_times.append(time.perf_counter() - started)
    model_ms = 1000 * float(np.median(model_times)) / len(rows)
    interval_ms = 1000 * float(np.median(interval_times)) / len(rows)
    return {"model_ms": model_ms, "interval_ms": interval_ms, "share": interval_ms / model_ms}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="all", help="comma-separated names, or 'all'")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--update-manifest",
        action="store_true",
        help="write each model's age_interval calibration into weights_manifest.json",
    )
    args = parser.parse_args(argv)
    manifest = load_manifest()
    names = (
        [*sorted(manifest.models), *sorted(manifest.ensembles)]
        if args.models == "all"
        else args.models.split(",")
    )
    results: dict[str, Any] = {
        "machine": machine_description(),
        "python": platform.python_version(),
        "fitted_on": FITTED_ON,
        "command": " ".join(
            ["python -m benchmarks.intervals", *(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "main_level": MAIN_LEVEL,
        "models": {},
    }
    blocks: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = manifest.estimator_spec(name)
        ensemble = isinstance(spec, EnsembleSpec)
        default = "flip" if spec.flip else "plain"
        faces = {(d, s): load_split(name, d, s) for d in DATASETS for s in ("val", "test")}
        chosen = {
            variant: fit_on_val([faces[d, "val"] for d in DATASETS], variant, ensemble)
            for variant in ("flip", "plain")
        }
        tables = {variant: table for variant, (table, _) in chosen.items()}
        shift, _ = fit_on_val([faces["utkface", "val"]], default, ensemble)
        report: dict[str, Any] = {
            "default": default,
            "scale": dict(tables[default].scale),
            "group_balance": chosen[default][1],
            "test": {d: evaluate(tables[default], faces[d, "test"], default) for d in DATASETS},
            "other_variant": {
                d: evaluate(tables[other], faces[d, "test"], other)["levels"][str(MAIN_LEVEL)]
                for other in ["plain" if default == "flip" else "flip"]
                for d in DATASETS
            },
            "shift_check": {
                d: evaluate(shift, faces[d, "test"], default)["levels"] for d in DATASETS
            },
            "cost": interval_cost(name, tables[default], default),
        }
        results["models"][name] = report
        main = {d: report["test"][d]["levels"][str(MAIN_LEVEL)] for d in DATASETS}
        print(
            f"{name:18s} {default:5s} 0.8 coverage "
            + " ".join(
                f"{d} {100 * m['coverage']:.1f}% (w {m['width']:.1f})" for d, m in main.items()
            )
            + " ratio "
            + " ".join(f"{report['test'][d]['quarters']['ratio']:.2f}" for d in DATASETS)
            + f" shift aaf {100 * report['shift_check']['aaf'][str(MAIN_LEVEL)]['coverage']:.1f}%"
            + f" cost {100 * report['cost']['share']:.2f}%",
            flush=True,
        )
        blocks[name] = {
            "fitted_on": FITTED_ON,
            "command": COMMAND,
            "weights_sha256": {m.name: m.file.sha256 for m in spec.members}
            if isinstance(spec, EnsembleSpec)
            else spec.file.sha256,
            **{variant: table_to_json(table) for variant, table in tables.items()},
        }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.models == "all" else "_partial"
    write_json(args.out / f"intervals{suffix}.json", results)
    (args.out / f"intervals{suffix}.md").write_text(markdown(results), encoding="utf-8")
    if not suffix:
        plot(results, args.out / "interval_coverage.png")
    if args.update_manifest:

        def put(name: str, entry: dict[str, Any]) -> None:
            entry["age_interval"] = blocks[name]

        edit_entries(blocks, put)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
