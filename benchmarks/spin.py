"""Does onnxruntime's thread spinning pay for faceage? Each setting, on this CPU.

    python -m benchmarks.spin               # writes benchmarks/results/spin.{json,md}
    python -m benchmarks.spin --quick       # fewer images and repeats, for a smoke run

onnxruntime lets an idle intra-op thread busy-wait ("spin") for the next call. That
pays when one session is called back to back; a faceage prediction instead takes
turns between the detector's session, the age model's session(s) and Python. For
spinning off and on (``$FACEAGE_ORT_SPINNING``) and 1 and 2 intra-op threads this
measures: ms per image of ``AgeEstimator.predict`` on decoded UTKFace test images
(c3ae and mobileagenet, detection included), the ensemble's batch-1 latency and
batch-32 throughput from uint8 crops, and each of those two models' session alone,
called back to back at batch 1 and 64. The settings alternate within each round, so a
machine that gets busier part-way through slows them alike; each figure is the median
over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import faceage
from benchmarks.common import RESULTS_DIR, UTKFACE, machine_description, read_utkface, write_json
from benchmarks.speed import model_crops, model_input, timed
from faceage._env import FACEAGE_ORT_SPINNING_ENV
from faceage.ensemble import EnsembleModel
from faceage.hub import resolve_weight_file
from faceage.images import load_image
from faceage.inference import AgeModel
from faceage.spec import load_manifest

SETTINGS = [(spin, threads) for threads in (1, 2) for spin in ("off", "on")]
PIPELINE_MODELS = ("c3ae", "mobileagenet")


@contextmanager
def spinning(setting: str) -> Iterator[None]:
    """Sessions made inside are made with spinning ``"on"`` or ``"off"``."""
    before = os.environ.get(FACEAGE_ORT_SPINNING_ENV)
    os.environ[FACEAGE_ORT_SPINNING_ENV] = "1" if setting == "on" else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[FACEAGE_ORT_SPINNING_ENV]
        else:
            os.environ[FACEAGE_ORT_SPINNING_ENV] = before


def predict_all(estimator: faceage.AgeEstimator, images: list[np.ndarray]) -> None:
    for image in images:
        estimator.predict(image)


def one_round(spin: str, threads: int, images: list[np.ndarray], repeats: int) -> dict[str, float]:
    manifest = load_manifest()
    out: dict[str, float] = {}
    with spinning(spin):
        for name in PIPELINE_MODELS:
            estimator = faceage.AgeEstimator.from_pretrained(name, intra_op_num_threads=threads)
            seconds = min(timed(partial(predict_all, estimator, images), repeats=1))
            out[f"{name}_predict_ms_per_image"] = 1000 * seconds / len(images)
        spec = manifest.ensembles["ensemble"]
        paths = {m.name: resolve_weight_file(m.file, name=m.name) for m in spec.members}
        ensemble = EnsembleModel(spec, paths, intra_op_num_threads=threads)
        one, many = model_crops(spec, 1), model_crops(spec, 32)
        latency = timed(partial(ensemble.run_crops, one), repeats=10 * repeats)
        out["ensemble_batch1_ms"] = 1000 * statistics.median(latency)
        out["ensemble_batch32_faces_per_s"] = 32 / statistics.median(
            timed(partial(ensemble.run_crops, many), repeats=repeats)
        )
        for name in PIPELINE_MODELS:
            spec_one = manifest.model(name)
            path = resolve_weight_file(spec_one.file, name=name)
            model = AgeModel(spec_one, path, intra_op_num_threads=threads)
            one_face = model_input(spec_one, 1)
            out[f"{name}_session_batch1_ms"] = 1000 * statistics.median(
                timed(partial(model.run, one_face), repeats=10 * repeats)
            )
            tensor = model_input(spec_one, 64)
            out[f"{name}_session_batch64_faces_per_s"] = 64 / statistics.median(
                timed(partial(model.run, tensor), repeats=repeats)
            )
    return out


def markdown(results: dict[str, Any]) -> str:
    columns = [
        ("c3ae_predict_ms_per_image", "c3ae predict, ms/image", 2),
        ("mobileagenet_predict_ms_per_image", "mobileagenet predict, ms/image", 2),
        ("ensemble_batch1_ms", "ensemble batch 1, ms", 2),
        ("ensemble_batch32_faces_per_s", "ensemble batch 32, faces/s", 0),
        ("c3ae_session_batch1_ms", "c3ae session alone, batch 1, ms", 3),
        ("c3ae_session_batch64_faces_per_s", "c3ae session alone, batch 64, faces/s", 0),
        ("mobileagenet_session_batch1_ms", "mobileagenet session alone, batch 1, ms", 3),
        (
            "mobileagenet_session_batch64_faces_per_s",
            "mobileagenet session alone, batch 64, faces/s",
            0,
        ),
    ]
    lines = [
        "| spinning | threads | " + " | ".join(title for _, title, _ in columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for row in results["settings"]:
        cells = [f"{row[key]:.{digits}f}" for key, _, digits in columns]
        lines.append(f"| {row['spinning']} | {row['threads']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"- `{results['command']}` on {results['machine']}: {results['images']} UTKFace test "
        f"images decoded once, {results['rounds']} rounds, medians."
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    count, rounds, repeats = (10, 1, 3) if args.quick else (100, 3, 20)
    rows = read_utkface("test")[:count]
    images = [load_image(UTKFACE / "images" / row.file) for row in rows]
    measured: dict[tuple[str, int], list[dict[str, float]]] = {s: [] for s in SETTINGS}
    for _ in range(rounds):
        for spin, threads in SETTINGS:
            measured[spin, threads].append(one_round(spin, threads, images, repeats))
    settings = [
        {
            "spinning": spin,
            "threads": threads,
            **{k: statistics.median(r[k] for r in runs) for k in runs[0]},
        }
        for (spin, threads), runs in measured.items()
    ]
    results = {
        "machine": machine_description(),
        "command": " ".join(
            ["python -m benchmarks.spin", *(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "images": count,
        "rounds": rounds,
        "settings": settings,
    }
    write_json(args.out / "spin.json", results)
    text = markdown(results)
    (args.out / "spin.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
