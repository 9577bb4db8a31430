"""How steady and how right the tracked ages are: jitter of raw vs smoothed ages, and
frame-level vs track-level MAE, on clips made from UTKFace test faces.

    python -m benchmarks.video_tracking                    # c3ae, the tests' four clips
    python -m benchmarks.video_tracking --models c3ae,mobileagenet --singles 8

The clips are the ones ``tests/test_video.py`` makes (``benchmarks/synthetic_video.py``:
one face; two crossing; one leaving and another entering; one covered for 8 frames),
plus ``--singles`` one-face clips of further test faces (ages spread over 18-75; half
of them grow over the clip, half shrink). Each
clip is scored once without smoothing; the tracks' raw ages are then smoothed again
offline with several half-lives (None: the default, the mean of all frames), so the
half-lives are compared on exactly the same detections and ages.

* jitter: mean |change| of a track's age between consecutive scored frames (years);
* MAE frame-level: mean |age - truth| over a track's frames, averaged over tracks;
* MAE track-level: mean |final smoothed age - truth| over tracks.

Writes ``benchmarks/results/video_tracking.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS_DIR, machine_description, write_json
from benchmarks.synthetic_video import (
    Clip,
    Person,
    evaluate,
    load_chip,
    scenario_clips,
    utkface_faces,
    write_clip,
)
from faceage import AgeEstimator
from faceage.smoothing import AgeSmoother
from faceage.video_results import FrameResult

HALF_LIVES: tuple[float | None, ...] = (None, 100.0, 30.0, 10.0)


def resmooth(results: Sequence[FrameResult], half_life: float | None) -> list[FrameResult]:
    """``results`` (scored without smoothing) with each track's age smoothed again."""
    smoothers: dict[int, AgeSmoother] = {}
    out = []
    for result in results:
        faces = []
        for face in result.faces:
            smoother = smoothers.setdefault(face.track_id, AgeSmoother(half_life=half_life))
            age = smoother.update(face.age).age
            faces.append(dataclasses.replace(face, age_smoothed=age))
        out.append(dataclasses.replace(result, faces=tuple(faces)))
    return out


def summarise(found: Sequence[dict[str, Any]]) -> dict[str, Any]:
    raw = [s for f in found for s in f["raw_steps"]]
    smooth = [s for f in found for s in f["smooth_steps"]]
    tracks = [t for f in found for t in f["per_track"]]
    return {
        "clips": len(found),
        "tracks": len(tracks),
        "steps": len(raw),
        "tracks_equal_people": all(f["tracks"] == f["people"] for f in found),
        "id_switches": sum(f["id_switches"] for f in found),
        "jitter_raw": round(float(np.mean(raw)), 3),
        "jitter_smoothed": round(float(np.mean(smooth)), 3),
        "mae_frame": round(float(np.mean([t["mae_frame"] for t in tracks])), 3),
        "mae_track": round(float(np.mean([t["error_final"] for t in tracks])), 3),
        "tracks_nearer": sum(t["error_final"] < t["mae_frame"] - 1e-6 for t in tracks),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="c3ae", help="comma-separated model names")
    parser.add_argument("--singles", type=int, default=0, help="extra one-face clips")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="faceage-video-tracking-"))
    try:
        clips: dict[str, Clip] = scenario_clips(folder)
        if args.singles:
            extra = folder / "singles"
            extra.mkdir()
            for number, (path, age) in enumerate(utkface_faces(args.singles + 4)[4:]):
                # Half the faces grow over their clip, half shrink, so that a half-life
                # (which favours the last frames) gains nothing from the faces' size.
                small, large = (110.0, 170.0, 110.0), (330.0, 190.0, 150.0)
                start, end = (small, large) if number % 2 == 0 else (large, small)
                person = Person(load_chip(path), age, 0, 79, start, end)
                name = f"single-{number}-age{age}"
                clips[name] = write_clip(
                    extra / f"{name}.mp4", [person], frames=80, seed=10 + number
                )
        report: dict[str, Any] = {
            "command": "python -m benchmarks.video_tracking"
            + (f" --models {args.models}" if args.models != "c3ae" else "")
            + (f" --singles {args.singles}" if args.singles else ""),
            "machine": machine_description(),
            "clips": {
                name: {"frames": c.frames, "ages": [p.age for p in c.people]}
                for name, c in clips.items()
            },
            "models": {},
        }
        for model in args.models.split(","):
            estimator = AgeEstimator.from_pretrained(model)
            started = time.perf_counter()
            raw = {
                name: list(estimator.predict_video(c.path, smoothing=False))
                for name, c in clips.items()
            }
            seconds = time.perf_counter() - started
            entry: dict[str, Any] = {"seconds": round(seconds, 1), "half_life": {}}
            for half_life in HALF_LIVES:
                found = {
                    name: evaluate(clips[name], resmooth(raw[name], half_life)) for name in clips
                }
                key = "none" if half_life is None else f"{half_life:g}"
                entry["half_life"][key] = summarise(list(found.values()))
                test_names = [n for n in found if not n.startswith("single-")]
                entry["half_life"][key]["test_clips"] = summarise([found[n] for n in test_names])
                if half_life is None:
                    entry["test_clips"] = entry["half_life"][key]["test_clips"]
                    entry["per_clip"] = {
                        name: {
                            k: (round(v, 3) if isinstance(v, float) else v)
                            for k, v in f.items()
                            if k not in ("raw_steps", "smooth_steps")
                        }
                        for name, f in found.items()
                    }
            report["models"][model] = entry
            test = entry["test_clips"]
            print(
                f"{model}: test clips ({test['tracks']} tracks): jitter raw "
                f"{test['jitter_raw']:.3f} vs smoothed {test['jitter_smoothed']:.3f} years/frame; "
                "MAE frame-level "
                f"{test['mae_frame']:.2f} vs track-level {test['mae_track']:.2f}"
            )
            for key, figures in entry["half_life"].items():
                print(
                    f"  all {figures['clips']} clips, half-life {key}: jitter "
                    f"{figures['jitter_raw']:.3f} -> {figures['jitter_smoothed']:.3f}, MAE "
                    f"{figures['mae_frame']:.2f} -> {figures['mae_track']:.2f} "
                    f"({figures['tracks_nearer']} of {figures['tracks']} tracks nearer); "
                    f"test clips MAE {figures['test_clips']['mae_frame']:.2f} -> "
                    f"{figures['test_clips']['mae_track']:.2f}"
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    write_json(RESULTS_DIR / "video_tracking.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
