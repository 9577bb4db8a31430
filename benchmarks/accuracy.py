"""Accuracy of every registered model through the full faceage pipeline on UTKFace test.

    python -m benchmarks.accuracy                      # all models, flip off and on
    python -m benchmarks.accuracy --models c3ae --flip off --limit 200

Each test image goes through ``AgeEstimator.predict_batch`` exactly as a user's photo
would: decode, RetinaFace detection, alignment, context crops, onnxruntime. Detection
runs once per image and is shared by all models (a memoising wrapper around the same
detector), which changes nothing but the time taken. The face scored is the one with
the best detection score; images where no face is found are reported as such and left
out of the error figures.

Writes ``benchmarks/results/accuracy.json`` and ``accuracy.md`` (and PNG plots when
matplotlib is installed: ``pip install -e .[bench]``) for a run of all models on the
whole test split; ``--models``, ``--split`` or ``--limit`` write ``accuracy_*.json`` /
``.md`` beside them instead. ``--update-manifest`` records the figures of each model
measured on a whole split; on val with ``--flip both`` it also sets each model's
default ``flip`` (on where mirroring lowered the val MAE without lowering the val
gender accuracy):

    python -m benchmarks.accuracy --split val --flip both --update-manifest
"""

from __future__ import annotations

import argparse
import hashlib
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
    Row,
    edit_entries,
    labelled_face,
    machine_description,
    read_utkface,
    record_metrics,
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


def summarise(errors: np.ndarray) -> dict[str, float]:
    if errors.size == 0:
        return {"n": 0}
    return {
        "n": int(errors.size),
        "mae": float(np.mean(errors)),
        "median_ae": float(np.median(errors)),
        "cs5": float(np.mean(errors <= 5.0)),
    }


def first_faces(
    estimator: AgeEstimator, rows: Sequence[Row], *, batch: int = 64
) -> Iterator[tuple[Row, ImageResult, Face | None]]:
    """Each row's image result and its labelled face (:func:`labelled_face`; None where
    none was found)."""
    paths = [str(row.path) for row in rows]
    for start in range(0, len(paths), batch):
        results = estimator.predict_batch(paths[start : start + batch])
        for row, result in zip(rows[start : start + batch], results):
            yield row, result, labelled_face(result, row)


def evaluate(estimator: AgeEstimator, rows: Sequence[Row], *, batch: int = 64) -> dict[str, Any]:
    """Run ``estimator`` over ``rows`` and compute the headline and breakdown figures."""
    started = time.perf_counter()
    predictions: list[dict[str, Any]] = []
    for row, result, face in first_faces(estimator, rows, batch=batch):
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
    errors = np.array([abs(p["pred_age"] - p["age"]) for p in found], dtype=np.float64)
    report: dict[str, Any] = {
        "images": len(predictions),
        "no_face": len(predictions) - len(found),
        "no_face_share": (len(predictions) - len(found)) / max(len(predictions), 1),
        "seconds": seconds,
        **summarise(errors),
    }
    if estimator.spec.has_gender:
        correct = [p["pred_gender"] == ("female" if p["gender"] == 1 else "male") for p in found]
        report["gender_accuracy"] = float(np.mean(correct)) if correct else None
    breakdown: dict[str, dict[str, Any]] = {"age_group": {}, "gender": {}, "race": {}}
    labels: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("age_group", lambda p: group_name(p["age"])),
        ("gender", lambda p: "female" if p["gender"] == 1 else "male"),
        ("race", lambda p: RACES.get(p["race"], "unknown")),
    ]
    for key, label in labels:
        groups: dict[str, list[float]] = {}
        for p, err in zip(found, errors):
            groups.setdefault(label(p), []).append(float(err))
        breakdown[key] = {g: summarise(np.array(v)) for g, v in sorted(groups.items())}
    report["breakdown"] = breakdown
    report["scatter"] = [[p["age"], round(p["pred_age"], 2)] for p in found]
    return report


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"UTKFace test split ({results['images']} images), full pipeline (RetinaFace + "
        f"alignment + crops + model), {results['machine']}.",
        f"Command: `{results['command']}`",
        "",
        "| model | flip | MAE | median AE | CS(5) | gender acc | no face |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in results["models"].items():
        for flip, r in runs.items():
            gender = r.get("gender_accuracy")
            lines.append(
                f"| {name} | {flip} | {r['mae']:.2f} | {r['median_ae']:.2f} | "
                f"{100 * r['cs5']:.1f}% | {'' if gender is None else f'{100 * gender:.1f}%'} | "
                f"{100 * r['no_face_share']:.2f}% |"
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
    names = [n for n, runs in results["models"].items() if "off" in runs]
    if names:
        cols = min(4, len(names))
        rows = -(-len(names) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            pts = np.array(results["models"][name]["off"]["scatter"])
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
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--update-manifest",
        action="store_true",
        help="write each model's full-pipeline figures into weights_manifest.json "
        "(on val with --flip both: and its default flip)",
    )
    args = parser.parse_args(argv)
    if args.update_manifest and args.split == "val" and args.flip != "both":
        parser.error("--split val --update-manifest chooses each model's flip: use --flip both")

    names = (
        [*(s.name for s in faceage.list_models()), *sorted(load_manifest().ensembles)]
        if args.models == "all"
        else args.models.split(",")
    )
    rows = read_utkface(args.split)[: args.limit]
    flips = {"off": [False], "on": [True], "both": [False, True]}[args.flip]
    detector = MemoDetector(RetinaFaceDetector())
    results: dict[str, Any] = {
        "split": args.split,
        "images": len(rows),
        "machine": machine_description(),
        "python": platform.python_version(),
        "faceage": faceage.__version__,
        "command": " ".join(
            ["python -m benchmarks.accuracy", *(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "models": {},
    }
    for name in names:
        for flip in flips:
            estimator = faceage.AgeEstimator.from_pretrained(name, detector=detector, flip=flip)
            report = evaluate(estimator, rows)
            results["models"].setdefault(name, {})["on" if flip else "off"] = report
            print(
                f"{name:16s} flip={'on ' if flip else 'off'} MAE {report['mae']:.3f} "
                f"CS5 {100 * report['cs5']:.1f}% "
                + (
                    f"gender {100 * report['gender_accuracy']:.1f}% "
                    if report.get("gender_accuracy") is not None
                    else ""
                )
                + f"no-face {report['no_face']} ({report['seconds']:.0f}s)",
                flush=True,
            )
    args.out.mkdir(parents=True, exist_ok=True)
    # only a run of every model on the whole test split replaces the published results
    # (and plots); a part of it goes to its own file, so the README never loses models
    full_test = args.split == "test" and args.limit is None
    suffix = "" if full_test else f"_{args.split}{args.limit or ''}"
    if args.models != "all":
        suffix += "_partial"
    # Per-image (true, predicted) pairs feed the plots only: they repeat UTKFace's labels,
    # which are not ours to publish.
    write_json(
        args.out / f"accuracy{suffix}.json",
        {
            **results,
            "models": {
                name: {
                    flip: {k: v for k, v in r.items() if k != "scatter"} for flip, r in runs.items()
                }
                for name, runs in results["models"].items()
            },
        },
    )
    (args.out / f"accuracy{suffix}.md").write_text(markdown(results), encoding="utf-8")
    if not suffix:
        plots(results, args.out)
    if args.update_manifest and args.limit is None:
        update_manifest(results)
        if args.split == "val":
            set_flip_defaults(results)
    return 0


def flip_pays(runs: dict[str, Any]) -> bool:
    """Whether mirroring lowered the MAE without lowering the gender accuracy."""
    off, on = runs["off"], runs["on"]
    if on["mae"] >= off["mae"]:
        return False
    return off.get("gender_accuracy") is None or on["gender_accuracy"] >= off["gender_accuracy"]


def set_flip_defaults(results: dict[str, Any], path: Path = MANIFEST) -> None:
    """Set each measured model's ``flip`` in the manifest from its val figures."""

    def put(name: str, entry: dict[str, Any]) -> None:
        entry["flip"] = flip_pays(results["models"][name])

    edit_entries(results["models"], put, path)


def update_manifest(results: dict[str, Any]) -> None:
    """Record each model's figures as ``metrics.utkface_{split}_pipeline`` in the manifest."""
    split = results["split"]
    ensembles = load_manifest().ensembles
    entries = {}
    for name, runs in results["models"].items():
        if "off" not in runs:
            continue
        off = runs["off"]
        entry = {
            key: round(off[key], 4)
            for key in ("mae", "median_ae", "cs5", "no_face_share", "gender_accuracy")
            if off.get(key) is not None
        }
        entry["images"] = off["images"]
        if "on" in runs:
            entry["mae_flip"] = round(runs["on"]["mae"], 4)
            entry["cs5_flip"] = round(runs["on"]["cs5"], 4)
            if runs["on"].get("gender_accuracy") is not None:
                entry["gender_accuracy_flip"] = round(runs["on"]["gender_accuracy"], 4)
        entry["protocol"] = (
            "full faceage pipeline (RetinaFace, alignment, crops, onnxruntime) on the "
            f"UTKFace {split} images; images with no face found are left out (no_face_share)"
        )
        entry["command"] = results["command"]
        entry["machine"] = results["machine"]
        if name in ensembles:  # its figures hold only for these member files
            entry["members_sha256"] = {m.name: m.file.sha256 for m in ensembles[name].members}
        entries[name] = entry
    record_metrics(f"utkface_{split}_pipeline", entries)


if __name__ == "__main__":
    raise SystemExit(main())
