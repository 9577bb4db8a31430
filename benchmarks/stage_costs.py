"""Where one image's time and arithmetic go, for ``python -m benchmarks.throughput``: the
stage split, the detector's and the model's MACs, and RetinaFace at batch 1, 8 and 16."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.onnx_macs import count_macs
from faceage import hub
from faceage.detection.base import fit_scale
from faceage.detection.retinaface import retinaface_onnx_bytes
from faceage.estimator import AgeEstimator
from faceage.pipeline import PreparedImage
from faceage.runtime import create_session
from faceage.scaled_images import load_scaled
from faceage.spec import ModelSpec


def stage_split(estimator: AgeEstimator, files: Sequence[Path], chunk: int = 32) -> dict[str, Any]:
    """Seconds of each stage, run one after the other in this thread."""
    preparer = estimator.preparer
    stages = dict.fromkeys(("decode", "detect", "crop", "model"), 0.0)
    prepared = []
    for file in files:
        t0 = time.perf_counter()
        scaled = load_scaled(str(file), source=str(file), input_side=preparer.input_side)
        t1 = time.perf_counter()
        found = preparer.detect(scaled)
        t2 = time.perf_counter()
        crops = preparer.crops(scaled, found)
        t3 = time.perf_counter()
        stages["decode"] += t1 - t0
        stages["detect"] += t2 - t1
        stages["crop"] += t3 - t2
        prepared.append(PreparedImage(str(file), scaled.width, scaled.height, tuple(found), crops))
        if len(prepared) == chunk or file == files[-1]:
            t4 = time.perf_counter()
            estimator._score(prepared)  # the model stage alone
            stages["model"] += time.perf_counter() - t4
            prepared = []
    total = sum(stages.values())
    return {
        "seconds": stages,
        "share": {k: v / total for k, v in stages.items()},
        "ms_per_image": 1000 * total / len(files),
    }


def macs_per_image(
    estimator: AgeEstimator, spec: ModelSpec, files: Sequence[Path], faces: int
) -> dict[str, Any]:
    """MACs of the detector at each image's input size and of the model per face."""
    side = estimator.preparer.input_side or 640
    detector: dict[tuple[int, int], int] = {}
    total = 0
    for file in files:
        scaled = load_scaled(str(file), source=str(file), input_side=None)
        height, width = scaled.pixels.shape[:2]
        scale = fit_scale(height, width, side)
        shape = (max(1, round(height * scale)), max(1, round(width * scale)))
        if shape not in detector:
            detector[shape] = count_macs(retinaface_onnx_bytes(), input_shape=(1, 3, *shape))
        total += detector[shape]
    per_face = count_macs(hub.resolve_weight_file(spec.file, name=spec.name))
    passes = 2 if estimator.flip else 1
    return {
        "detector": total / len(files),
        "model": per_face * passes * faces / len(files),
        "model_per_face_pass": per_face,
        "passes_per_face": passes,
    }


def batched_detection(repeats: int = 15) -> dict[str, float]:
    """RetinaFace on 32 200x200 inputs (1 thread) at batch 4, 8 and 16, each timed right
    after a one-by-one pass: median ms per image, and the median ratio of the pairs."""
    session = create_session(retinaface_onnx_bytes(), intra_op_num_threads=1)
    blob = np.random.default_rng(0).normal(0, 50, (32, 3, 200, 200)).astype(np.float32)

    def per_image(batch: int) -> float:
        start = time.perf_counter()
        for first in range(0, 32, batch):
            session.run(None, {"input": blob[first : first + batch]})
        return 1000 * (time.perf_counter() - start) / 32

    times: dict[int, list[float]] = {1: [], 4: [], 8: [], 16: []}
    ratios: dict[int, list[float]] = {4: [], 8: [], 16: []}
    for batch in times:
        per_image(batch)  # warm-up: each input shape's first call
    for _ in range(repeats):
        for batch in ratios:
            one, many = per_image(1), per_image(batch)
            times[1].append(one)
            times[batch].append(many)
            ratios[batch].append(many / one)
    report = {f"batch{b}": statistics.median(v) for b, v in times.items()}
    report.update({f"ratio{b}": statistics.median(v) for b, v in ratios.items()})
    return report
