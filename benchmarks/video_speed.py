"""Frames per second of ``predict_video`` on 640x480 and 1920x1080 clips, per model and
``every`` setting, against the 30 frames/s a webcam gives.

    python -m benchmarks.video_speed                           # c3ae and mobileagenet
    python -m benchmarks.video_speed --frames 60 --every 1,3   # a quick run

Each clip (30 fps MP4, written here from two UTKFace test faces crossing a moving
background) is read and scored whole: frames/s counts every frame read, skipped ones
included, so it is what real time is measured against; the time includes decoding,
detection (RetinaFace), crops, the model (with its default flip) and tracking. A clip
is also only decoded, as the floor no setting can beat. Runs go round-robin over
``--rounds`` (the best counts), so a load change hits every setting alike; the load
average at start and end is recorded, since other work on the machine slows every
figure.

Writes ``benchmarks/results/video_speed.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import onnxruntime

from benchmarks.common import RESULTS_DIR, machine_description, write_json
from benchmarks.synthetic_video import Person, load_chip, utkface_faces, write_clip
from faceage import AgeEstimator

CLIP_FPS = 30.0


def make_clip(folder: Path, width: int, height: int, frames: int) -> Path:
    """Two faces crossing a ``width`` x ``height`` picture, a third of its height each."""
    (a, age_a), (b, age_b) = [(load_chip(p), age) for p, age in utkface_faces(2)]
    size = height / 3
    people = [
        Person(
            a,
            age_a,
            0,
            frames - 1,
            (0.2 * width, 0.25 * height, size),
            (0.8 * width, 0.3 * height, size * 1.1),
        ),
        Person(
            b,
            age_b,
            0,
            frames - 1,
            (0.8 * width, 0.72 * height, size),
            (0.2 * width, 0.7 * height, size * 0.9),
        ),
    ]
    path = folder / f"clip-{width}x{height}.mp4"
    write_clip(path, people, frames=frames, width=width, height=height, fps=CLIP_FPS)
    return path


def decode_only(path: Path) -> float:
    capture = cv2.VideoCapture(str(path))
    started = time.perf_counter()
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count / (time.perf_counter() - started)


def score(estimator: AgeEstimator, path: Path, every: int) -> dict[str, Any]:
    started = time.perf_counter()
    run = estimator.predict_video(path, every=every)
    scored = sum(1 for _ in run)
    seconds = time.perf_counter() - started
    return {"frames": run.frames_read, "scored": scored, "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="c3ae,mobileagenet")
    parser.add_argument("--sizes", default="640x480,1920x1080")
    parser.add_argument("--every", default="1,2,3", help="comma-separated every settings")
    parser.add_argument("--frames", type=int, default=150, help="frames per clip")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each; the best counts")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    everys = [int(v) for v in args.every.split(",")]

    folder = Path(tempfile.mkdtemp(prefix="faceage-video-speed-"))
    load_start = os.getloadavg()
    runs: dict[str, list[float]] = {}
    try:
        clips = {f"{w}x{h}": make_clip(folder, w, h, args.frames) for w, h in sizes}
        estimators = {
            m: AgeEstimator.from_pretrained(m, intra_op_num_threads=args.threads) for m in models
        }
        for estimator in estimators.values():  # warm-up: first calls allocate
            list(estimator.predict_video(next(iter(clips.values())), every=args.frames))
        for _ in range(args.rounds):
            for size, path in clips.items():
                runs.setdefault(f"{size}|decode only|", []).append(decode_only(path))
                for model, estimator in estimators.items():
                    for every in everys:
                        found = score(estimator, path, every)
                        rate = found["frames"] / found["seconds"]
                        runs.setdefault(f"{size}|{model}|{every}", []).append(rate)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    rows = []
    for key, rates in runs.items():
        size, model, step = key.split("|")
        best = max(rates)
        rows.append(
            {
                "size": size,
                "model": model,
                "every": int(step) if step else None,
                "frames_per_second": round(best, 1),
                "frames_per_second_all": [round(r, 1) for r in rates],
                "scored_per_second": round(best / int(step), 1) if step else None,
                "real_time": best >= CLIP_FPS,
            }
        )
    command = "python -m benchmarks.video_speed" + "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("models", args.models, "c3ae,mobileagenet"),
            ("sizes", args.sizes, "640x480,1920x1080"),
            ("every", args.every, "1,2,3"),
            ("frames", args.frames, 150),
            ("rounds", args.rounds, 2),
            ("threads", args.threads, None),
        )
        if value != default
    )
    results = {
        "command": command,
        "machine": machine_description(),
        "onnxruntime": onnxruntime.__version__,
        "opencv": cv2.__version__,
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
        "clip_fps": CLIP_FPS,
        "frames": args.frames,
        "detector": "retinaface",
        "threads": args.threads,
        "rows": rows,
    }
    write_json(RESULTS_DIR / "video_speed.json", results)
    print(f"{results['machine']}; load {load_start} -> {results['load_average_at_end']}")
    print("| size | model | every | frames/s | scored frames/s | real time (30 fps) |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['size']} | {row['model']} | {row['every'] or ''} | "
            f"{row['frames_per_second']} | {row['scored_per_second'] or ''} | "
            f"{'yes' if row['real_time'] else 'no'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
