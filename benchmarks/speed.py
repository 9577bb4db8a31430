"""Speed and size of every model, the detectors, and the whole pipeline, on this CPU.

    python -m benchmarks.speed                 # everything
    python -m benchmarks.speed --update-manifest   # and record latency/throughput per model
    python -m benchmarks.speed --quick         # fewer repeats, for a smoke run

Per model: parameters, file size, MACs counted from the ONNX graph, latency per face at
batch 1 (median), throughput at batch 32 and 64, with 1 and 2 onnxruntime threads, and
the share of the machine's float32 matmul peak (numpy) that the model reaches. An
ensemble is timed the same way from its uint8 crops, so its figures include cutting
each member's crops out of the ensemble's and normalising them. Per
detector: ms per image at 200x200, 640x480 and 1920x1080. Whole folders, end to end
and against the peer: ``python -m benchmarks.throughput``.

Writes ``benchmarks/results/speed.json`` and ``speed.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

import faceage
from benchmarks.common import (
    RESULTS_DIR,
    SHARED,
    UTKFACE,
    machine_description,
    manifest_models,
    read_utkface,
    record_metrics,
    write_json,
)
from benchmarks.onnx_macs import count_macs
from faceage.detection import get_detector
from faceage.ensemble import EnsembleModel
from faceage.hub import resolve_weight_file
from faceage.images import load_image
from faceage.inference import AgeModel
from faceage.preprocess import to_input_tensor
from faceage.spec import EnsembleSpec, ModelSpec, load_manifest


def timed(fn: Callable[[], object], *, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def matmul_peak_gflops(size: int = 1024, repeats: int = 10) -> float:
    """Measured float32 GFLOP/s of a large numpy matmul: the machine's practical peak."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    best = min(timed(lambda: a @ b, repeats=repeats))
    return 2 * size**3 / best / 1e9


def model_crops(spec: ModelSpec | EnsembleSpec, batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(
        0, 255, (batch, spec.num_crops, spec.input_size, spec.input_size, 3), dtype=np.uint8
    )


def model_input(spec: ModelSpec, batch: int) -> np.ndarray:
    return to_input_tensor(model_crops(spec, batch), spec)


def bench_model(
    spec: ModelSpec, path: Path, *, repeats: int, peak: float, float_source: Path | None = None
) -> dict[str, Any]:
    """``float_source``: the float32 file an int8 model was made from. Its MACs are the
    int8 model's (the counter cannot follow onnxruntime's own int8 operators), and no
    share of the float32 peak is given for int8 arithmetic."""
    macs = count_macs(float_source or path)
    report: dict[str, Any] = {
        "params": spec.params,
        "file_bytes": path.stat().st_size,
        "macs_per_face": macs,
        "threads": {},
    }
    for threads in (1, 2):
        model = AgeModel(spec, path, intra_op_num_threads=threads, max_batch_size=256)
        one = model_input(spec, 1)
        latency = statistics.median(timed(partial(model.run, one), repeats=repeats * 5))
        entry: dict[str, Any] = {"latency_ms_batch1": 1000 * latency}
        for batch in (32, 64):
            tensor = model_input(spec, batch)
            seconds = statistics.median(timed(partial(model.run, tensor), repeats=repeats))
            entry[f"faces_per_s_batch{batch}"] = batch / seconds
        best = max(entry["faces_per_s_batch32"], entry["faces_per_s_batch64"])
        # 2 FLOPs per MAC, against the numpy matmul peak.
        entry["share_of_peak"] = (
            2 * macs * best / (peak * 1e9) if macs and float_source is None else None
        )
        report["threads"][str(threads)] = entry
    return report


def bench_detectors(*, repeats: int) -> dict[str, Any]:
    face = load_image(UTKFACE / "images" / read_utkface("test")[0].file)
    out: dict[str, Any] = {}
    for name in ("retinaface", "yunet"):
        try:
            # YuNet's file from ../shared, checked against the manifest's sha256 like a download.
            detector = get_detector(name, local_dir=SHARED / "models" / "yunet")
        except Exception as exc:  # yunet needs its file: say so instead of failing
            out[name] = {"error": str(exc).splitlines()[0]}
            continue
        assert detector is not None
        out[name] = {}
        for width, height in ((200, 200), (640, 480), (1920, 1080)):
            canvas = np.full((height, width, 3), 110, np.uint8)
            side = min(200, height, width)
            canvas[:side, :side] = face[:side, :side]
            seconds = statistics.median(timed(partial(detector.detect, canvas), repeats=repeats))
            out[name][f"{width}x{height}"] = 1000 * seconds
    return out


def bench_ensemble(spec: EnsembleSpec, *, repeats: int) -> dict[str, Any]:
    """Latency and throughput of an ensemble, from uint8 crops to averaged outputs."""
    manifest = load_manifest()
    paths = {m.name: resolve_weight_file(m.file, name=m.name) for m in spec.members}
    report: dict[str, Any] = {
        "params": spec.params,
        "file_bytes": sum(path.stat().st_size for path in paths.values()),
        "macs_per_face": None,
        "members": list(paths),
        "threads": {},
    }
    member_macs = []
    for member in spec.members:
        source = manifest_models()[member.name].get("quantized_from", {}).get("model")
        member_macs.append(
            count_macs(resolve_weight_file(manifest.model(source).file, name=source))
            if source
            else count_macs(paths[member.name])
        )
    if all(member_macs):
        report["macs_per_face"] = sum(member_macs)
    for threads in (1, 2):
        model = EnsembleModel(spec, paths, intra_op_num_threads=threads, max_batch_size=256)
        one = model_crops(spec, 1)
        latency = statistics.median(timed(partial(model.run_crops, one), repeats=repeats * 5))
        entry: dict[str, Any] = {"latency_ms_batch1": 1000 * latency, "share_of_peak": None}
        for batch in (32, 64):
            crops = model_crops(spec, batch)
            seconds = statistics.median(timed(partial(model.run_crops, crops), repeats=repeats))
            entry[f"faces_per_s_batch{batch}"] = batch / seconds
        report["threads"][str(threads)] = entry
    return report


def update_manifest(results: dict[str, Any]) -> None:
    """Record each model's latency and throughput as ``metrics.speed`` in the manifest."""
    entries = {}
    for name, r in results["models"].items():
        one, two = r["threads"]["1"], r["threads"]["2"]
        entries[name] = {
            "macs_per_face": r["macs_per_face"],
            "latency_ms_batch1_1thread": round(one["latency_ms_batch1"], 3),
            "latency_ms_batch1_2threads": round(two["latency_ms_batch1"], 3),
            "faces_per_s_batch32_2threads": round(two["faces_per_s_batch32"], 1),
            "faces_per_s_batch64_2threads": round(two["faces_per_s_batch64"], 1),
            "command": r.get("command", results["command"]),
            "machine": results["machine"],
        }
    record_metrics("speed", entries)


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Machine: {results['machine']}; numpy float32 matmul peak "
        f"{results['peak_gflops']:.1f} GFLOP/s. Command: `{results['command']}`",
        "",
        "| model | params | size | MMACs/face | ms/face (b=1, 1 thr) | ms/face (b=1, 2 thr) "
        "| faces/s (b=32, 2 thr) | faces/s (b=64, 2 thr) | share of peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["models"].items():
        one, two = r["threads"]["1"], r["threads"]["2"]
        share, macs = two["share_of_peak"], r["macs_per_face"]
        lines.append(
            f"| {name} | {r['params'] or ''} | {r['file_bytes'] / 1024:.0f} KB | "
            f"{'' if macs is None else f'{macs / 1e6:.1f}'} | "
            f"{one['latency_ms_batch1']:.2f} | "
            f"{two['latency_ms_batch1']:.2f} | {two['faces_per_s_batch32']:.0f} | "
            f"{two['faces_per_s_batch64']:.0f} | "
            f"{'' if share is None else f'{100 * share:.1f}%'} |"
        )
    lines += [
        "",
        "Detectors, ms per image:",
        "",
        "| detector | 200x200 | 640x480 | 1920x1080 |",
        "|---|---|---|---|",
    ]
    for name, r in results["detectors"].items():
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | |")
            continue
        lines.append(f"| {name} | {r['200x200']:.1f} | {r['640x480']:.1f} | {r['1920x1080']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--update-manifest",
        action="store_true",
        help="write each model's latency and throughput into weights_manifest.json",
    )
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else 20
    manifest = load_manifest()
    names = (
        [*(s.name for s in faceage.list_models()), *sorted(manifest.ensembles)]
        if args.models == "all"
        else args.models.split(",")
    )
    peak = matmul_peak_gflops()
    results: dict[str, Any] = {
        "machine": machine_description(),
        "peak_gflops": peak,
        "command": " ".join(
            ["python -m benchmarks.speed", *(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        "models": {},
    }
    raw_models = manifest_models()
    for name in names:
        if name in manifest.ensembles:
            results["models"][name] = bench_ensemble(manifest.ensembles[name], repeats=repeats)
            print(f"{name}: {results['models'][name]['threads']['2']}", flush=True)
            continue
        spec = manifest.model(name)
        path = resolve_weight_file(spec.file, name=name)
        source = raw_models.get(name, {}).get("quantized_from", {}).get("model")
        float_source = (
            resolve_weight_file(manifest.model(source).file, name=source) if source else None
        )
        results["models"][name] = bench_model(
            spec, path, repeats=repeats, peak=peak, float_source=float_source
        )
        print(f"{name}: {results['models'][name]['threads']['2']}", flush=True)
    published = args.out / "speed.json"
    if args.models == "all" or not published.exists():
        results["detectors"] = bench_detectors(repeats=repeats)
        report = results
    else:
        # a part of the zoo: its rows replace theirs in the published results, each
        # model keeping the command that measured it; detectors and end to end stay
        report = json.loads(published.read_text(encoding="utf-8"))
        for name, row in results["models"].items():
            report["models"][name] = {**row, "command": results["command"]}
    write_json(published, report)
    (args.out / "speed.md").write_text(markdown(report), encoding="utf-8")
    if args.update_manifest:
        update_manifest(results)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
