"""Accuracy of every registered model through the full faceage pipeline, per data set.

    python -m benchmarks.accuracy                      # all models, flip off and on, both sets
    python -m benchmarks.accuracy --models c3ae --flip off --datasets aaf --limit 200

Each test image goes through ``AgeEstimator.predict_batch`` exactly as a user's photo
would: decode, RetinaFace detection, alignment, context crops, onnxruntime. Detection
runs once per image and is shared by all models (a memoising wrapper around the same
detector), which changes nothing but the time taken. The face scored is the one the
label belongs to (``benchmarks.common.labelled_face``: the best-scored face on UTKFace,
the one nearest the centre on All-Age-Faces); images where no face is found are
reported as such and left out of the error figures.

Per data set and model: MAE, CS(5), MAE and signed error (predicted - true: + is
over-estimation) by age group, gender accuracy overall and for women and men.

Writes ``benchmarks/results/accuracy.json`` / ``.md`` (UTKFace; and PNG plots when
matplotlib is installed: ``pip install -e .[bench]``) and ``aaf_accuracy.json`` / ``.md``
for a run of all models on a whole test split; ``--models``, ``--split`` or ``--limit``
write ``accuracy_*`` files beside them instead. ``--update-manifest`` records each
model's figures on a whole split as ``metrics.{dataset}_{split}_pipeline``; on val with
``--flip both`` it also sets each model's default ``flip``: on where mirroring lowered
the mean of the data sets' val MAEs without lowering their mean val gender accuracy:

    python -m benchmarks.accuracy --split val --flip both --update-manifest
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import faceage
from benchmarks.common import (
    MANIFEST,
    RESULTS_DIR,
    ROOT,
    Row,
    edit_entries,
    labelled_face,
    machine_description,
    read_dataset,
    record_metrics,
    signed,
    write_json,
)
from faceage.detection import Detection
from faceage.detection.retinaface import RetinaFaceDetector
from faceage.estimator import AgeEstimator
from faceage.results import Face, ImageResult
from faceage.spec import load_manifest

AGE_GROUPS = [(0, 2), (3, 9), (10, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 69), (70, 200)]
RACES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}


class MemoDetector:
    """Runs the wrapped detector once per distinct image and replays its answer."""

    def __init__(self, detector: RetinaFaceDetector) -> None:
        self.inner = detector
        self.name = detector.name
        self._seen: dict[str, list[Detection]] = {}

    def detect(self, image: np.ndarray) -> list[Detection]:
        key = hashlib.sha1(np.ascontiguousarray(image).data).hexdigest()
        if key not in self._seen:
            self._seen[key] = self.inner.detect(image)
        return self._seen[key]


def group_name(age: float) -> str:
    for low, high in AGE_GROUPS:
        if low <= age <= high:
            return f"{low}+" if high >= 200 else f"{low}-{high}"
    return "?"


DATASET_TITLES = {"utkface": "UTKFace", "aaf": "All-Age-Faces"}
SCATTER_DIR = ROOT / ".cache" / "accuracy-scatter"


def summarise(errors: np.ndarray, signed_errors: np.ndarray | None = None) -> dict[str, float]:
    if errors.size == 0:
        return {"n": 0}
    summary = {
        "n": int(errors.size),
        "mae": float(np.mean(errors)),
        "median_ae": float(np.median(errors)),
        "cs5": float(np.mean(errors <= 5.0)),
    }
    if signed_errors is not None:
        summary["mean_signed_error"] = float(np.mean(signed_errors))
    return summary


def first_faces(
    estimator: AgeEstimator, rows: Sequence[Row], *, batch: int = 64, workers: int | None = None
) -> Iterator[tuple[Row, ImageResult, Face | None]]:
    """Each row's image result and its labelled face (:func:`labelled_face`; None where
    none was found). ``workers``: as for ``predict_batch`` (None: its default)."""
    paths = [str(row.path) for row in rows]
    options: dict[str, Any] = {} if workers is None else {"workers": workers}
    for start in range(0, len(paths), batch):
        results = estimator.predict_batch(paths[start : start + batch], **options)
        for row, result in zip(rows[start : start + batch], results):
            yield row, result, labelled_face(result, row)


def evaluate(
    estimator: AgeEstimator, rows: Sequence[Row], *, batch: int = 64, workers: int | None = None
) -> dict[str, Any]:
    """Run ``estimator`` over ``rows`` and compute the headline and breakdown figures."""
    started = time.perf_counter()
    predictions: list[dict[str, Any]] = []
    for row, result, face in first_faces(estimator, rows, batch=batch, workers=workers):
        predictions.append(
            {
                "file": row.file,
                "age": row.age,
                "gender": row.gender,
                "race": row.race,
                "pred_age": None if face is None else face.age,
                "pred_gender": None if face is None else face.gender,
                "error": result.error,
            }
        )
    seconds = time.perf_counter() - started
    found = [p for p in predictions if p["pred_age"] is not None]
    signed_errors = np.array([p["pred_age"] - p["age"] for p in found], dtype=np.float64)
    errors = np.abs(signed_errors)
    report: dict[str, Any] = {
        "images": len(predictions),
        "no_face": len(predictions) - len(found),
        "no_face_share": (len(predictions) - len(found)) / max(len(predictions), 1),
        "seconds": seconds,
        **summarise(errors),
    }
    if estimator.spec.has_gender:
        for suffix, chosen in (("", (0, 1)), ("_female", (1,)), ("_male", (0,))):
            correct = [
                p["pred_gender"] == ("female" if p["gender"] == 1 else "male")
                for p in found
                if p["gender"] in chosen
            ]
            report[f"gender_accuracy{suffix}"] = float(np.mean(correct)) if correct else None
    breakdown: dict[str, dict[str, Any]] = {"age_group": {}, "gender": {}, "race": {}}
    labels: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("age_group", lambda p: group_name(p["age"])),
        ("gender", lambda p: "female" if p["gender"] == 1 else "male"),
        ("race", lambda p: RACES.get(p["race"], "unknown")),
    ]
    if not any(p["race"] for p in found):  # a data set without race labels
        labels.pop()
        del breakdown["race"]
    for key, label in labels:
        groups: dict[str, list[float]] = {}
        for p, err in zip(found, signed_errors):
            groups.setdefault(label(p), []).append(float(err))
        breakdown[key] = {
            g: summarise(np.abs(np.array(v)), np.array(v)) for g, v in sorted(groups.items())
        }
    report["breakdown"] = breakdown
    report["scatter"] = [[p["age"], round(p["pred_age"], 2)] for p in found]
    return report


def markdown(results: dict[str, Any]) -> str:
    title = DATASET_TITLES[results.get("dataset", "utkface")]
    lines = [
        f"{title} {results['split']} split ({results['images']} images), full pipeline "
        f"(RetinaFace + alignment + crops + model), {results['machine']}.",
        "Command: " + " and ".join(f"`{c}`" for c in results.get("commands", [results["command"]])),
        "",
        "| model | flip | MAE | median AE | CS(5) | gender acc | women | men | no face |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def percent(value: float | None) -> str:
        return "" if value is None else f"{100 * value:.1f}%"

    for name, runs in results["models"].items():
        for flip, r in runs.items():
            lines.append(
                f"| {name} | {flip} | {r['mae']:.2f} | {r['median_ae']:.2f} | "
                f"{100 * r['cs5']:.1f}% | {percent(r.get('gender_accuracy'))} | "
                f"{percent(r.get('gender_accuracy_female'))} | "
                f"{percent(r.get('gender_accuracy_male'))} | {100 * r['no_face_share']:.2f}% |"
            )
    groups = [f"{lo}+" if hi >= 200 else f"{lo}-{hi}" for lo, hi in AGE_GROUPS]
    lines += [
        "",
        "MAE by age group (flip off):",
        "",
        "| model | " + " | ".join(groups) + " |",
        "|---" * (len(groups) + 1) + "|",
    ]
    for name, runs in results["models"].items():
        by_group = runs["off"]["breakdown"]["age_group"] if "off" in runs else {}
        cells = [f"{by_group[g]['mae']:.1f}" if g in by_group else "" for g in groups]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Signed error by age group (flip off; predicted - true, + is over-estimation):",
        "",
        "| model | " + " | ".join(groups) + " |",
        "|---" * (len(groups) + 1) + "|",
    ]
    for name, runs in results["models"].items():
        by_group = runs["off"]["breakdown"]["age_group"] if "off" in runs else {}
        cells = [
            signed(by_group[g].get("mean_signed_error"), 1) if g in by_group else "" for g in groups
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if not any("race" in r.get("off", {}).get("breakdown", {}) for r in results["models"].values()):
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "MAE by gender and race (flip off):",
        "",
        "| model | male | female | White | Black | Asian | Indian | Others |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results["models"].items():
        if "off" not in runs:
            continue
        b = runs["off"]["breakdown"]
        cells = [b["gender"].get(g, {}).get("mae") for g in ("male", "female")]
        cells += [b["race"].get(r, {}).get("mae") for r in RACES.values()]
        lines.append(
            f"| {name} | " + " | ".join("" if c is None else f"{c:.1f}" for c in cells) + " |"
        )
    return "\n".join(lines) + "\n"


def plots(results: dict[str, Any], out_dir: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    groups = [f"{lo}+" if hi >= 200 else f"{lo}-{hi}" for lo, hi in AGE_GROUPS]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, runs in results["models"].items():
        if "off" not in runs:
            continue
        by_group = runs["off"]["breakdown"]["age_group"]
        ax.plot(
            groups, [by_group.get(g, {}).get("mae", np.nan) for g in groups], marker="o", label=name
        )
    ax.set_xlabel("true age group (years)")
    ax.set_ylabel("MAE (years)")
    ax.set_title("UTKFace test: MAE by age group (full pipeline)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "mae_by_age_group.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    scatter_dir = SCATTER_DIR / results.get("dataset", "utkface")
    # pairs are kept on the machine that measured them: draw the models that have them
    names = [
        n
        for n, runs in results["models"].items()
        if "off" in runs and (scatter_dir / f"{n}.json").exists()
    ]
    if names:
        cols = min(4, len(names))
        rows = -(-len(names) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            cached = scatter_dir / f"{name}.json"
            pts = np.array(json.loads(cached.read_text(encoding="utf-8")))
            ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.35)
            ax.plot([0, 100], [0, 100], color="k", lw=0.8)
            ax.set_title(f"{name} (MAE {results['models'][name]['off']['mae']:.2f})", fontsize=9)
            ax.set_xlabel("true age")
            ax.set_ylabel("predicted age")
        for ax in list(axes.flat)[len(names) :]:
            ax.axis("off")
        fig.tight_layout()
        path = out_dir / "predicted_vs_true.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="all", help="comma-separated names, or 'all'")
    parser.add_argument("--flip", choices=["off", "on", "both"], default="both")
    parser.add_argument("--split", default="test", choices=["test", "val"])
    parser.add_argument(
        "--datasets", default="utkface,aaf", help="comma-separated: utkface, aaf (default both)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --models on a whole test split: replace those models' entries in the "
        "published results and keep the others (after retraining some models)",
    )
    parser.add_argument(
        "--update-manifest",
        action="store_true",
        help="write each model's full-pipeline figures into weights_manifest.json "
        "(on val with --flip both: and its default flip)",
    )
    args = parser.parse_args(argv)
    if args.merge and (args.split != "test" or args.limit is not None):
        parser.error("--merge replaces entries of a whole test split's results")
    if args.update_manifest and args.split == "val" and args.flip != "both":
        parser.error("--split val --update-manifest chooses each model's flip: use --flip both")
    datasets = args.datasets.split(",")
    unknown = sorted(set(datasets) - set(DATASET_TITLES))
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {sorted(DATASET_TITLES)}")

    names = (
        [*(s.name for s in faceage.list_models()), *sorted(load_manifest().ensembles)]
        if args.models == "all"
        else args.models.split(",")
    )
    flips = {"off": [False], "on": [True], "both": [False, True]}[args.flip]
    detector = MemoDetector(RetinaFaceDetector())
    command = " ".join(
        ["python -m benchmarks.accuracy", *(sys.argv[1:] if argv is None else argv)]
    ).strip()
    measured = []
    for dataset in datasets:
        rows = read_dataset(dataset, args.split)[: args.limit]
        results: dict[str, Any] = {
            "dataset": dataset,
            "split": args.split,
            "images": len(rows),
            "machine": machine_description(),
            "python": platform.python_version(),
            "faceage": faceage.__version__,
            "command": command,
            "models": {},
        }
        for name in names:
            for flip in flips:
                estimator = faceage.AgeEstimator.from_pretrained(name, detector=detector, flip=flip)
                report = evaluate(estimator, rows)
                results["models"].setdefault(name, {})["on" if flip else "off"] = report
                print(
                    f"{dataset:8s} {name:16s} flip={'on ' if flip else 'off'} "
                    f"MAE {report['mae']:.3f} CS5 {100 * report['cs5']:.1f}% "
                    + (
                        f"gender {100 * report['gender_accuracy']:.1f}% "
                        if report.get("gender_accuracy") is not None
                        else ""
                    )
                    + f"no-face {report['no_face']} ({report['seconds']:.0f}s)",
                    flush=True,
                )
        measured_now = list(results["models"])
        write_results(results, args)  # with --merge, results then hold earlier models too
        if args.update_manifest and args.limit is None:
            update_manifest(results, measured_now)
        measured.append(results)
    if args.update_manifest and args.limit is None and args.split == "val":
        set_flip_defaults(measured)
    return 0


def write_results(results: dict[str, Any], args: argparse.Namespace) -> None:
    """``accuracy.json`` / ``.md`` (UTKFace) or ``aaf_accuracy.*`` for a run of every model
    on a whole test split, or of some with ``--merge`` (they replace their own entries
    and the rest are kept); any other part run goes to ``accuracy_*`` files of its own,
    so the README never loses models."""
    args.out.mkdir(parents=True, exist_ok=True)
    full_test = args.split == "test" and args.limit is None
    suffix = "" if full_test else f"_{args.split}{args.limit or ''}"
    if args.models != "all" and not args.merge:
        suffix += "_partial"
    dataset = results["dataset"]
    stem = "accuracy" if dataset == "utkface" else f"{dataset}_accuracy"
    if suffix:
        stem = f"accuracy{suffix}" + ("" if dataset == "utkface" else f"_{dataset}")
    path = args.out / f"{stem}.json"
    # Per-image (true, predicted) pairs feed the plots only: they repeat the data sets'
    # labels, which are not ours to publish, so they stay in the git-ignored cache.
    for name, runs in results["models"].items():
        if "off" in runs:
            write_json(SCATTER_DIR / dataset / f"{name}.json", runs["off"].pop("scatter"))
        for run in runs.values():
            run.pop("scatter", None)
            run["command"] = results["command"]
    if args.merge and path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        for runs in previous["models"].values():
            for run in runs.values():
                run.setdefault("command", previous["command"])
        results["models"] = {**previous["models"], **results["models"]}
        seen = dict.fromkeys(
            r["command"] for runs in results["models"].values() for r in runs.values()
        )
        results["commands"] = list(seen)
    write_json(path, results)
    (args.out / f"{stem}.md").write_text(markdown(results), encoding="utf-8")
    if not suffix and dataset == "utkface":
        plots(results, args.out)


def flip_pays(runs: Sequence[dict[str, Any]]) -> bool:
    """Whether mirroring lowered the mean MAE over the data sets' runs without lowering
    their mean gender accuracy (each data set counts alike)."""

    def mean(flip: str, key: str) -> float | None:
        values = [run[flip].get(key) for run in runs]
        return None if None in values else float(np.mean(values))

    if mean("on", "mae") >= mean("off", "mae"):  # type: ignore[operator]
        return False
    off, on = mean("off", "gender_accuracy"), mean("on", "gender_accuracy")
    return off is None or on is None or on >= off


def set_flip_defaults(measured: Sequence[dict[str, Any]], path: Path = MANIFEST) -> None:
    """Set each measured model's ``flip`` in the manifest from its val figures on every
    data set measured."""

    def put(name: str, entry: dict[str, Any]) -> None:
        entry["flip"] = flip_pays([results["models"][name] for results in measured])

    edit_entries(measured[0]["models"], put, path)


def update_manifest(results: dict[str, Any], names: Sequence[str]) -> None:
    """Record the figures of the models ``names`` as ``metrics.{dataset}_{split}_pipeline``
    in the manifest."""
    split, dataset = results["split"], results.get("dataset", "utkface")
    ensembles = load_manifest().ensembles
    entries = {}
    for name in names:
        runs = results["models"][name]
        if "off" not in runs:
            continue
        off = runs["off"]
        entry = {
            key: round(off[key], 4)
            for key in (
                "mae",
                "median_ae",
                "cs5",
                "no_face_share",
                "gender_accuracy",
                "gender_accuracy_female",
                "gender_accuracy_male",
            )
            if off.get(key) is not None
        }
        entry["by_age_group"] = {
            group: {
                "mae": round(g["mae"], 2),
                "signed": round(g["mean_signed_error"], 2),
                "n": g["n"],
            }
            for group, g in off["breakdown"]["age_group"].items()
        }
        entry["images"] = off["images"]
        if "on" in runs:
            entry["mae_flip"] = round(runs["on"]["mae"], 4)
            entry["cs5_flip"] = round(runs["on"]["cs5"], 4)
            for key in ("gender_accuracy", "gender_accuracy_female", "gender_accuracy_male"):
                if runs["on"].get(key) is not None:
                    entry[f"{key}_flip"] = round(runs["on"][key], 4)
        entry["protocol"] = (
            "full faceage pipeline (RetinaFace, alignment, crops, onnxruntime) on the "
            f"{DATASET_TITLES[dataset]} {split} images; images with no face found are left "
            "out (no_face_share)"
        )
        entry["command"] = results["command"]
        entry["machine"] = results["machine"]
        if name in ensembles:  # its figures hold only for these member files
            entry["members_sha256"] = {m.name: m.file.sha256 for m in ensembles[name].members}
        entries[name] = entry
    record_metrics(f"{dataset}_{split}_pipeline", entries)


if __name__ == "__main__":
    raise SystemExit(main())
