"""Choose the members of the ``ensemble`` model on the val splits of UTKFace and
All-Age-Faces.

    python -m benchmarks.ensemble [--max-members 3] [--limit N] [--update-manifest]

Every registered model runs once over the val images through the full pipeline
(RetinaFace, alignment, context crops, onnxruntime; flip off, one detection per image
shared by all). Then every set of up to ``--max-members`` models is scored as the
ensemble would score it: the mean of the members' ages (MAE), and the mean of the
gender models' P(female) (accuracy at 0.5), each figure the mean of the data sets'
(each set counts alike, however many faces it holds). The chosen set is the best one, except that
a smaller set within ``AGE_TIE`` years (``GENDER_TIE`` accuracy) of it wins (each
member costs a model run per face), and of sets that size within it the faster one
(batch-1 latencies from ``benchmarks/results/speed.json``). Test is never looked at;
``benchmarks.accuracy`` then measures the chosen ensemble there.

Members' predictions are taken on each model's own crops; the ensemble cuts its crops
once and resizes them per member, which moved c3ae's val MAE by under 0.01 years.

Writes ``benchmarks/results/ensemble.json`` and ``ensemble.md``; with
``--update-manifest`` the chosen members become the ``ensemble`` entry of
``weights_manifest.json`` (its test figures are then stale until ``benchmarks.accuracy``
measures it again).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import faceage
from benchmarks.accuracy import MemoDetector, first_faces
from benchmarks.common import (
    MANIFEST,
    RESULTS_DIR,
    Row,
    machine_description,
    read_dataset,
    write_json,
)
from faceage.detection.retinaface import RetinaFaceDetector

ENSEMBLE = "ensemble"
DATASETS = ["utkface", "aaf"]
AGE_TIE = 0.01  # years of val MAE
GENDER_TIE = 0.001  # share of val faces


def predictions(name: str, rows: Sequence[Row], detector: MemoDetector) -> dict[str, np.ndarray]:
    """``age`` and ``female`` (P(female), NaN without a gender output) of ``name`` on the
    best-scored face of each row; NaN where no face was found."""
    estimator = faceage.AgeEstimator.from_pretrained(name, detector=detector, flip=False)
    ages = np.full(len(rows), np.nan)
    female = np.full(len(rows), np.nan)
    for index, (_, _, face) in enumerate(first_faces(estimator, rows)):
        if face is None:
            continue
        ages[index] = face.age
        if face.gender is not None and face.gender_probability is not None:
            p = face.gender_probability
            female[index] = p if face.gender == "female" else 1 - p
    return {"age": ages, "female": female}


def rank_sets(
    outputs: dict[str, np.ndarray],
    truth: np.ndarray,
    *,
    max_members: int,
    task: str,
    groups: np.ndarray | None = None,
) -> list[tuple[tuple[str, ...], float]]:
    """Every set of up to ``max_members`` models scored on ``truth``, best first.

    ``task`` ``"age"``: MAE of the members' mean age (lower is better); ``"gender"``:
    accuracy of their mean P(female) at 0.5 against ``truth`` (1 = female; higher is
    better). Faces some member has no output for are left out of every score alike.
    A set never holds one net twice: a model and its ``-int8`` variant, or two models
    with the same outputs (``ssrnet-gender``'s age is ``ssrnet``'s). With ``groups`` (a
    data set number per face) the score is the mean of the groups' scores.
    """
    names: list[str] = []
    for name in sorted(outputs):
        if not any(np.array_equal(outputs[name], outputs[n], equal_nan=True) for n in names):
            names.append(name)
    found = np.all([np.isfinite(outputs[n]) for n in names], axis=0)
    group = (np.zeros(len(truth), dtype=int) if groups is None else groups)[found]
    scored = []
    for size in range(1, max_members + 1):
        for members in itertools.combinations(names, size):
            if any(f"{m}-int8" in members for m in members):
                continue
            mean = np.mean([outputs[m][found] for m in members], axis=0)
            if task == "age":
                per_face = np.abs(mean - truth[found])
            else:
                per_face = ((mean >= 0.5) == (truth[found] == 1)).astype(np.float64)
            score = float(np.mean([per_face[group == g].mean() for g in np.unique(group)]))
            scored.append((members, score))
    scored.sort(key=lambda item: item[1], reverse=task == "gender")
    return scored


def choose(
    ranked: list[tuple[tuple[str, ...], float]],
    tie: float,
    cost: Mapping[str, float] | None = None,
) -> tuple[str, ...]:
    """The smallest set scoring within ``tie`` of the best; among those, the one whose
    members ``cost`` least together (ms per face), and of equal costs the best."""
    best = ranked[0][1]
    close = [members for members, score in ranked if abs(score - best) <= tie]
    fewest = [members for members in close if len(members) == min(map(len, close))]
    costs = cost or {}
    # ``ranked`` is best first, so the position breaks a tie in cost by score
    return min(
        enumerate(fewest), key=lambda item: (sum(costs.get(m, 0.0) for m in item[1]), item[0])
    )[1]


def latencies(speed_json: Path) -> dict[str, float]:
    """ms per face at batch 1 with 1 thread, by model, from ``benchmarks.speed``'s results
    (what breaks a tie between equally accurate sets); empty if it has not run."""
    if not speed_json.exists():
        return {}
    models = json.loads(speed_json.read_text(encoding="utf-8"))["models"]
    return {name: float(m["threads"]["1"]["latency_ms_batch1"]) for name, m in models.items()}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Ensemble members chosen on the val splits of "
        f"{' and '.join(results.get('datasets', ['utkface']))} ({results['images']} images; "
        f"each figure the mean of the data sets'), full pipeline, flip off; "
        f"{results['machine']}.",
        f"Command: `{results['command']}`",
        "",
    ]
    for task, unit in (("age", "val MAE"), ("gender", "val gender accuracy")):
        lines += [f"| {task} members | {unit} |", "|---|---|"]
        for row in results[task]["top"]:
            chosen = " **(chosen)**" if row["members"] == results[task]["chosen"] else ""
            value = f"{row['score']:.3f}" if task == "age" else f"{100 * row['score']:.1f}%"
            lines.append(f"| {', '.join(row['members'])}{chosen} | {value} |")
        lines.append("")
    lines.append(
        f"A smaller set within {AGE_TIE} years (age) or {100 * GENDER_TIE:.1f} points "
        "(gender) of the best is preferred: each member is another model run per face; "
        "of sets of that size within it, the faster one."
    )
    return "\n".join(lines) + "\n"


def description(age: Sequence[str], gender: Sequence[str]) -> str:
    def words(names: Sequence[str]) -> str:
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"

    return (
        f"The most accurate age and gender: {words(age)} on the same face with their ages "
        f"averaged, and the P(female) of {words(gender)} averaged. Members and equal "
        "weights were chosen on the UTKFace and All-Age-Faces val splits (python -m "
        "benchmarks.ensemble)."
    )


def update_manifest(age: Sequence[str], gender: Sequence[str]) -> None:
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    entry = manifest.setdefault("ensembles", {}).setdefault(ENSEMBLE, {})
    entry["members"] = {"age": list(age), "gender": list(gender)}
    entry["description"] = description(age, gender)
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-members", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="first N val images only")
    parser.add_argument("--top", type=int, default=10, help="sets listed per task")
    parser.add_argument(
        "--update-manifest",
        action="store_true",
        help="make the chosen sets the members of the manifest's 'ensemble'",
    )
    args = parser.parse_args(argv)
    rows = [row for name in DATASETS for row in read_dataset(name, "val")[: args.limit]]
    detector = MemoDetector(RetinaFaceDetector())
    outputs = {}
    for spec in faceage.list_models():
        outputs[spec.name] = predictions(spec.name, rows, detector)
        print(f"{spec.name}: val predictions", file=sys.stderr, flush=True)
    latency = latencies(RESULTS_DIR / "speed.json")
    ages = np.array([row.age for row in rows], dtype=np.float64)
    genders = np.array([row.gender for row in rows], dtype=np.float64)
    groups = np.array([DATASETS.index(row.dataset) for row in rows])
    with_gender = {n: o["female"] for n, o in outputs.items() if np.isfinite(o["female"]).any()}
    results: dict[str, Any] = {
        "split": "val",
        "datasets": list(DATASETS),
        "images": len(rows),
        "machine": machine_description(),
        "command": " ".join(
            ["python -m benchmarks.ensemble", *(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "max_members": args.max_members,
    }
    for task, model_outputs, truth, tie in (
        ("age", {n: o["age"] for n, o in outputs.items()}, ages, AGE_TIE),
        ("gender", with_gender, genders, GENDER_TIE),
    ):
        ranked = rank_sets(
            model_outputs, truth, max_members=args.max_members, task=task, groups=groups
        )
        results[task] = {
            "chosen": list(choose(ranked, tie, latency)),
            "singles": {m[0]: s for m, s in ranked if len(m) == 1},
            "top": [{"members": list(m), "score": s} for m, s in ranked[: args.top]],
        }
    suffix = "" if args.limit is None else f"_{args.limit}"
    write_json(RESULTS_DIR / f"ensemble{suffix}.json", results)
    (RESULTS_DIR / f"ensemble{suffix}.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    if args.update_manifest and args.limit is None:
        update_manifest(results["age"]["chosen"], results["gender"]["chosen"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
