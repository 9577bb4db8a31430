"""Images/s of faceage on Ray Data (1 and 2 workers) against one ``faceage batch`` process.

    python -m benchmarks.ray_speed                      # the 2,115 UTKFace test images
    python -m benchmarks.ray_speed --limit 500          # a subset, for a smoke run

Every configuration scores the same files with the same model and detector, one after
the other, ``--rounds`` times round-robin (the best run counts; all are recorded):

* ``faceage batch DIR --out FILE.csv`` as a subprocess, onnxruntime threads left at one
  per core and with ``--threads 1`` (wall time includes start-up and the CSV);
* ``read_binary_files -> map_batches(FaceagePredictor) -> write_parquet`` on a local
  Ray cluster of ``--ray-cpus`` CPUs, with 1 and 2 actors; the time runs from building
  the dataset to the last file written, actor start-up included (``ray.init`` not).

Actors get ``num_cpus = min(1, (ray_cpus - 1) / workers)`` so one CPU stays free for
the read tasks (with every CPU held by actors, reading cannot start on a 2-CPU node),
and each runs onnxruntime on ``max(1, floor(num_cpus))`` threads.
Writes ``benchmarks/results/ray_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR, UTKFACE, machine_description, read_utkface, write_json


def link_files(files: Sequence[Path], folder: Path) -> None:
    """A folder holding exactly ``files`` (symlinks), for the folder-based runs."""
    folder.mkdir(parents=True)
    for file in files:
        (folder / file.name).symlink_to(file)


def bench_cli(folder: Path, out: Path, model: str, threads: int | None) -> dict[str, Any]:
    executable = shutil.which("faceage", path=str(Path(sys.executable).parent)) or "faceage"
    options = ["--model", model] + ([] if threads is None else ["--threads", str(threads)])
    command = [
        executable,
        "batch",
        str(folder),
        "--out",
        str(out),
        *options,
        "--no-progress",
        "--overwrite",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    with out.open(encoding="utf-8") as handle:
        rows = sum(1 for _ in handle) - 1
    return {
        "name": "faceage batch DIR --out ages.csv " + " ".join(options),
        "seconds": seconds,
        "rows": rows,
    }


def bench_ray(
    files: Sequence[Path], out: Path, model: str, *, workers: int, ray_cpus: int
) -> dict[str, Any]:
    import ray

    from faceage.integrations.ray import FaceagePredictor

    num_cpus = min(1.0, (ray_cpus - 1) / workers)
    started = time.perf_counter()
    photos = ray.data.read_binary_files([str(f) for f in files], include_paths=True)
    faces = photos.map_batches(
        FaceagePredictor,
        fn_constructor_kwargs={"model": model},
        batch_size=64,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=num_cpus,
    )
    faces.write_parquet(str(out))
    seconds = time.perf_counter() - started
    return {"name": f"Ray Data, {workers} worker(s) x {num_cpus:g} CPU", "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="c3ae")
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2, help="runs of each; the best counts")
    args = parser.parse_args(argv)

    import ray

    files = [UTKFACE / "images" / row.file for row in read_utkface("test")][: args.limit]
    scratch = Path(tempfile.mkdtemp(prefix="faceage-ray-speed-"))
    runs: dict[str, list[dict[str, Any]]] = {}
    load_start = os.getloadavg()
    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        folder = scratch / "images"
        link_files(files, folder)
        for round_ in range(args.rounds):  # round-robin, so load drift hits every config
            for threads in (None, 1):
                run = bench_cli(folder, scratch / "ages.csv", args.model, threads)
                runs.setdefault(run["name"], []).append(run)
            for workers in args.workers:
                out = scratch / f"parquet-{round_}-{workers}"
                run = bench_ray(files, out, args.model, workers=workers, ray_cpus=args.ray_cpus)
                runs.setdefault(run["name"], []).append(run)
    finally:
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)

    summary = {
        name: {
            "images_per_second_best": round(len(files) / min(r["seconds"] for r in group), 1),
            "images_per_second_all": [round(len(files) / r["seconds"], 1) for r in group],
        }
        for name, group in runs.items()
    }
    results = {
        "machine": machine_description(),
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
        "images": len(files),
        "model": args.model,
        "detector": "retinaface",
        "results": summary,
    }
    write_json(RESULTS_DIR / "ray_speed.json", results)
    print(f"{results['machine']}; {len(files)} images; load {load_start} -> {os.getloadavg()}")
    for name, numbers in summary.items():
        print(
            f"{name}: {numbers['images_per_second_best']} img/s "
            f"(runs: {numbers['images_per_second_all']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
